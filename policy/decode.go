package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxSize is the largest policy document, in bytes, that Parse accepts.
const MaxSize = 1 << 20

// maxDepth bounds the nesting of a policy document.
const maxDepth = 32

// FieldError is one problem with a policy, at the path of the key it
// concerns: "trusted_hubs[1].key", "limits.memory.max", "rules[2]
// (no-weekend-jobs)".
type FieldError struct {
	Path string `json:"path"`
	Rule string `json:"rule"`
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return "policy: " + e.Rule
	}
	return e.Path + ": " + e.Rule
}

// Errors is every problem Parse, Validate or Compile found, in document
// order.
type Errors []FieldError

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, fe := range e {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads a policy file: JSON when its first non-space byte is '{',
// YAML otherwise; see Parse. Errors are prefixed with the file name.
func Load(name string) (Policy, error) {
	f, err := os.Open(name)
	if err != nil {
		return Policy{}, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", name, err)
	}
	p, err := Parse(data)
	if err != nil {
		return Policy{}, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// Parse decodes a policy document over DefaultPolicy, normalizes and
// validates it. The document is the policy mapping itself (the content of
// the node config's policy key), in JSON when its first non-space byte is
// '{' (or YAML when such a document is not JSON), YAML otherwise. Decoding is strict: an unknown or duplicate key, a
// value of the wrong type, a YAML alias, merge key or second document,
// trailing JSON data, more than MaxSize bytes or nesting deeper than 32
// levels is an error naming the path. The error is an Errors listing every
// problem found.
func Parse(data []byte) (Policy, error) {
	p := DefaultPolicy()
	if err := p.decode(data); err != nil {
		return Policy{}, err
	}
	p.Normalize()
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// decode reads data and decodes it onto p.
func (p *Policy) decode(data []byte) error {
	if len(data) > MaxSize {
		return Errors{{Rule: fmt.Sprintf("must be at most %d bytes, got %d", MaxSize, len(data))}}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return Errors{{Rule: "must be valid UTF-8"}}
	}
	var (
		root *value
		err  error
	)
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		// JSON, or a YAML flow mapping: JSON's errors are the clearer
		// ones for a document that is neither.
		root, err = readJSON(data)
		if err != nil {
			if y, yerr := readYAML(data); yerr == nil {
				root, err = y, nil
			}
		}
	} else {
		root, err = readYAML(data)
	}
	if err != nil {
		return err
	}
	return p.decodeValue(root)
}

func (p *Policy) decodeValue(root *value) error {
	if root.kind == kindNull {
		return nil // an empty document: the defaults
	}
	if root.kind != kindMap {
		return Errors{{Rule: "must be a mapping"}}
	}
	var d decoder
	d.decode(root, reflect.ValueOf(p).Elem(), "")
	if len(d.errs) > 0 {
		return d.errs
	}
	return nil
}

// UnmarshalYAML decodes a policy strictly on top of p's current value, so
// that a node config whose defaults hold DefaultPolicy keeps them for keys
// the file leaves out; then it normalizes. It does not validate: call
// Validate (or Compile). Errors are an Errors with paths relative to the
// policy.
func (p *Policy) UnmarshalYAML(n *yaml.Node) error {
	root, err := fromYAML(n, "", 0)
	if err != nil {
		return err
	}
	if err := p.decodeValue(root); err != nil {
		return err
	}
	p.Normalize()
	return nil
}

// UnmarshalJSON is UnmarshalYAML for JSON.
func (p *Policy) UnmarshalJSON(data []byte) error {
	root, err := readJSON(data)
	if err != nil {
		return err
	}
	if err := p.decodeValue(root); err != nil {
		return err
	}
	p.Normalize()
	return nil
}

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindList
	kindMap
	kindBad
)

func (k kind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "a list", "a mapping", "unsupported"}[k]
}

// value is one node of a document read from YAML or JSON.
type value struct {
	kind  kind
	text  string // kindString: the string; kindNumber: the number in JSON syntax
	b     bool
	items []*value
	keys  []string
	dups  []bool // dups[i]: keys[i] appeared before in the same mapping
	vals  []*value
	bad   string // kindBad: the rule broken
}

func readYAML(data []byte) (root *value, err error) {
	defer func() {
		if r := recover(); r != nil { // the YAML parser has panicked on hostile input before
			root, err = nil, Errors{{Rule: fmt.Sprintf("yaml syntax: %v", r)}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &value{kind: kindNull}, nil
		}
		return nil, Errors{{Rule: "yaml syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, Errors{{Rule: fmt.Sprintf("must be one YAML document, found another at line %d", next.Line)}}
	case !errors.Is(err, io.EOF):
		return nil, Errors{{Rule: "yaml syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	return fromYAML(&doc, "", 0)
}

func fromYAML(n *yaml.Node, path string, depth int) (*value, error) {
	if depth > maxDepth {
		return nil, Errors{{Path: path, Rule: fmt.Sprintf("must not nest deeper than %d levels", maxDepth)}}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &value{kind: kindNull}, nil
		}
		return fromYAML(n.Content[0], path, depth)
	case yaml.AliasNode:
		return &value{kind: kindBad, bad: "YAML aliases are not supported"}, nil
	case yaml.SequenceNode:
		v := &value{kind: kindList, items: make([]*value, len(n.Content))}
		for i, c := range n.Content {
			item, err := fromYAML(c, indexPath(path, i), depth+1)
			if err != nil {
				return nil, err
			}
			v.items[i] = item
		}
		return v, nil
	case yaml.MappingNode:
		v := &value{kind: kindMap}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			key, val := k.Value, (*value)(nil)
			switch {
			case k.Kind == yaml.ScalarNode && (k.ShortTag() == "!!merge" || k.Value == "<<" && k.Style == 0):
				val = &value{kind: kindBad, bad: "YAML merge keys are not supported"}
			case k.Kind != yaml.ScalarNode:
				key, val = "?", &value{kind: kindBad, bad: "keys must be strings"}
			default:
				var err error
				if val, err = fromYAML(n.Content[i+1], keyPath(path, key), depth+1); err != nil {
					return nil, err
				}
			}
			v.keys = append(v.keys, key)
			v.dups = append(v.dups, seen[key])
			v.vals = append(v.vals, val)
			seen[key] = true
		}
		return v, nil
	case yaml.ScalarNode:
		return fromYAMLScalar(n), nil
	}
	return &value{kind: kindBad, bad: "unsupported YAML node"}, nil
}

func fromYAMLScalar(n *yaml.Node) *value {
	switch tag := n.ShortTag(); tag {
	case "!!str":
		return &value{kind: kindString, text: n.Value}
	case "!!null":
		return &value{kind: kindNull}
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return &value{kind: kindBad, bad: "must be true or false"}
		}
		return &value{kind: kindBool, b: b}
	case "!!int", "!!float":
		var x any
		if err := n.Decode(&x); err != nil {
			return &value{kind: kindBad, bad: "must be a number"}
		}
		var text string
		switch x := x.(type) {
		case int:
			text = strconv.Itoa(x)
		case int64:
			text = strconv.FormatInt(x, 10)
		case uint64:
			text = strconv.FormatUint(x, 10)
		case float64:
			if math.IsInf(x, 0) || math.IsNaN(x) {
				return &value{kind: kindBad, bad: "must be a finite number"}
			}
			text = strconv.FormatFloat(x, 'g', -1, 64)
		default:
			return &value{kind: kindBad, bad: "must be a number"}
		}
		return &value{kind: kindNumber, text: text}
	default:
		return &value{kind: kindBad, bad: fmt.Sprintf("YAML tag %s is not supported", tag)}
	}
}

func readJSON(data []byte) (*value, error) {
	if len(data) > MaxSize {
		return nil, Errors{{Rule: fmt.Sprintf("must be at most %d bytes, got %d", MaxSize, len(data))}}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	r := jsonReader{dec: dec, data: data}
	root, err := r.read("", 0)
	if err != nil {
		return nil, err
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		end += int64(len(data[end:]) - len(bytes.TrimLeft(data[end:], " \t\r\n")))
		return nil, Errors{{Rule: fmt.Sprintf("json syntax: %s: trailing data after the policy", r.position(end))}}
	}
	return root, nil
}

type jsonReader struct {
	dec  *json.Decoder
	data []byte
}

func (r *jsonReader) read(path string, depth int) (*value, error) {
	if depth > maxDepth {
		return nil, Errors{{Path: path, Rule: fmt.Sprintf("must not nest deeper than %d levels", maxDepth)}}
	}
	tok, err := r.dec.Token()
	if err != nil {
		return nil, r.syntax(err)
	}
	switch t := tok.(type) {
	case nil:
		return &value{kind: kindNull}, nil
	case bool:
		return &value{kind: kindBool, b: t}, nil
	case json.Number:
		return &value{kind: kindNumber, text: t.String()}, nil
	case string:
		return &value{kind: kindString, text: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := &value{kind: kindList}
			for r.dec.More() {
				item, err := r.read(indexPath(path, len(v.items)), depth+1)
				if err != nil {
					return nil, err
				}
				v.items = append(v.items, item)
			}
			if _, err := r.dec.Token(); err != nil {
				return nil, r.syntax(err)
			}
			return v, nil
		case '{':
			v := &value{kind: kindMap}
			seen := map[string]bool{}
			for r.dec.More() {
				tok, err := r.dec.Token()
				if err != nil {
					return nil, r.syntax(err)
				}
				key, _ := tok.(string)
				val, err := r.read(keyPath(path, key), depth+1)
				if err != nil {
					return nil, err
				}
				v.keys = append(v.keys, key)
				v.dups = append(v.dups, seen[key])
				v.vals = append(v.vals, val)
				seen[key] = true
			}
			if _, err := r.dec.Token(); err != nil {
				return nil, r.syntax(err)
			}
			return v, nil
		}
	}
	return nil, r.syntax(fmt.Errorf("unexpected %v", tok))
}

func (r *jsonReader) syntax(err error) error {
	off := r.dec.InputOffset()
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Decoder.Token's offsets are not always from the start of the
		// input; Unmarshal's are.
		if uerr := json.Unmarshal(r.data, new(json.RawMessage)); errors.As(uerr, &se) {
			err = uerr
		}
		off = se.Offset - 1
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		off, msg = int64(len(r.data)), "unexpected end of input"
	}
	return Errors{{Rule: fmt.Sprintf("json syntax: %s: %s", r.position(off), msg)}}
}

// position turns a byte offset into "line L, column C", both from 1.
func (r *jsonReader) position(off int64) string {
	off = min(max(off, 0), int64(len(r.data)))
	before := r.data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}

// json re-encodes v, for types that decode themselves.
func (v *value) json() []byte {
	var b bytes.Buffer
	v.writeJSON(&b)
	return b.Bytes()
}

func (v *value) writeJSON(b *bytes.Buffer) {
	switch v.kind {
	case kindNull, kindBad:
		b.WriteString("null")
	case kindBool:
		b.WriteString(strconv.FormatBool(v.b))
	case kindNumber:
		b.WriteString(v.text)
	case kindString:
		s, _ := json.Marshal(v.text)
		b.Write(s)
	case kindList:
		b.WriteByte('[')
		for i, it := range v.items {
			if i > 0 {
				b.WriteByte(',')
			}
			it.writeJSON(b)
		}
		b.WriteByte(']')
	case kindMap:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			s, _ := json.Marshal(k)
			b.Write(s)
			b.WriteByte(':')
			v.vals[i].writeJSON(b)
		}
		b.WriteByte('}')
	}
}

// keyPath names a key as a reader would: limits.memory, registries["node.js"].
func keyPath(path, key string) string {
	simple := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			simple = false
			break
		}
	}
	switch {
	case !simple:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	policyType      = reflect.TypeFor[Policy]()
)

// decoder decodes a value tree into a Go value by its json tags, collecting
// every problem.
type decoder struct{ errs Errors }

func (d *decoder) fail(path, rule string) {
	d.errs = append(d.errs, FieldError{Path: path, Rule: rule})
}

func (d *decoder) decode(v *value, out reflect.Value, path string) {
	if v.kind == kindBad {
		d.fail(path, v.bad)
		return
	}
	if v.kind == kindNull {
		out.SetZero()
		return
	}
	t := out.Type()
	if t != policyType && reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := out.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(v.json()); err != nil {
			d.fail(path, strings.TrimPrefix(err.Error(), "json: "))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.decodeStruct(v, out, path)
	case reflect.String:
		if v.kind != kindString {
			d.fail(path, "must be a string, not "+v.kind.String())
			return
		}
		out.SetString(v.text)
	case reflect.Bool:
		if v.kind != kindBool {
			d.fail(path, "must be true or false, not "+v.kind.String())
			return
		}
		out.SetBool(v.b)
	case reflect.Int:
		if v.kind != kindNumber {
			d.fail(path, "must be a whole number, not "+v.kind.String())
			return
		}
		n, err := strconv.ParseInt(v.text, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(v.text, 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				d.fail(path, "must be a whole number, not "+v.text)
				return
			}
			n = int64(f)
		}
		if out.OverflowInt(n) {
			d.fail(path, "number out of range: "+v.text)
			return
		}
		out.SetInt(n)
	case reflect.Float64:
		if v.kind != kindNumber {
			d.fail(path, "must be a number, not "+v.kind.String())
			return
		}
		f, err := strconv.ParseFloat(v.text, 64)
		if err != nil || math.IsInf(f, 0) {
			d.fail(path, "number out of range: "+v.text)
			return
		}
		out.SetFloat(f)
	case reflect.Slice:
		if v.kind != kindList {
			d.fail(path, "must be a list, not "+v.kind.String())
			return
		}
		s := reflect.MakeSlice(t, len(v.items), len(v.items))
		for i, it := range v.items {
			d.decode(it, s.Index(i), indexPath(path, i))
		}
		out.Set(s)
	case reflect.Map:
		if v.kind != kindMap {
			d.fail(path, "must be a mapping, not "+v.kind.String())
			return
		}
		m := reflect.MakeMapWithSize(t, len(v.keys))
		for i, k := range v.keys {
			p := keyPath(path, k)
			if v.dups[i] {
				d.fail(p, "duplicate key")
				continue
			}
			elem := reflect.New(t.Elem()).Elem()
			d.decode(v.vals[i], elem, p)
			m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), elem)
		}
		out.Set(m)
	default:
		d.fail(path, "unsupported type "+t.String())
	}
}

func (d *decoder) decodeStruct(v *value, out reflect.Value, path string) {
	if v.kind != kindMap {
		d.fail(path, "must be a mapping, not "+v.kind.String())
		return
	}
	fields := fieldsOf(out.Type())
	for i, k := range v.keys {
		p := keyPath(path, k)
		if v.dups[i] {
			d.fail(p, "duplicate key")
			continue
		}
		idx, ok := fields[k]
		if !ok {
			if v.vals[i].kind == kindBad { // a merge key or a key that is not a string
				d.fail(p, v.vals[i].bad)
				continue
			}
			d.fail(p, unknownKey(k, fields))
			continue
		}
		d.decode(v.vals[i], out.Field(idx), p)
	}
}

// fieldsOf maps the json names of t's fields to their indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = i
	}
	return m
}

// unknownKey says a key is unknown, suggesting the closest known one.
func unknownKey(k string, fields map[string]int) string {
	best, bestD := "", 3
	for name := range fields {
		if dist := editDistance(strings.ToLower(k), name); dist < bestD || dist == bestD && name < best {
			best, bestD = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key (did you mean %s?)", best)
	}
	return "unknown key"
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
