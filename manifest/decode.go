package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Decoding is two steps. The source is first read into a tree of values
// (readYAML, readJSON), which is the same for both formats; then the tree is
// decoded into a Service by reflection over the json tags (decoder), so the
// names Parse accepts are the names json.Marshal writes. Each step reports
// problems with the path of the field they concern.

// maxDepth bounds the nesting of a manifest, config and inputs included.
const maxDepth = 64

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindList
	kindMap
	kindBad // a YAML construct the manifest does not support; bad says which
)

// value is one node of a manifest read from YAML or JSON.
type value struct {
	kind  kind
	text  string   // kindString: the string; kindNumber: the number as written
	num   any      // kindNumber: int64 when integral and in range, else float64; nil when not finite
	b     bool     // kindBool; text holds it as written
	items []*value // kindList
	pairs []pair   // kindMap, in source order
	bad   string   // kindBad: the rule broken
}

type pair struct {
	key    string
	badKey string // the rule a key that is not a string breaks
	dup    bool   // a key seen before in the same mapping
	val    *value
}

// readYAML reads exactly one YAML document.
func readYAML(data []byte) (*value, error) {
	if !utf8.Valid(data) {
		return nil, Errors{{Rule: "must be valid UTF-8"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeYAML(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{Rule: "must not be empty"}}
		}
		return nil, yamlError(err)
	}
	var next yaml.Node
	switch err := decodeYAML(dec, &next); {
	case err == nil:
		return nil, Errors{{Rule: fmt.Sprintf("must be one YAML document, found another at line %d", next.Line)}}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err)
	}
	if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" && doc.Content[0].Value == "" {
		return nil, Errors{{Rule: "must not be empty"}}
	}
	return fromYAML(&doc, "", 0)
}

// decodeYAML reads the next document. The YAML parser has panicked on
// hostile input in the past; a manifest is untrusted, so such a panic is
// reported as an error rather than raised.
func decodeYAML(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

func yamlError(err error) error {
	return Errors{{Rule: "yaml syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
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
		return &value{kind: kindBad, bad: "aliases are not supported"}, nil
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
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := pair{key: k.Value}
			switch {
			case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!str":
				p.dup = seen[k.Value]
				seen[k.Value] = true
			case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
				p.badKey = "merge keys are not supported"
			case k.Kind == yaml.ScalarNode:
				p.badKey = "keys must be strings"
			default:
				p.key = "?"
				p.badKey = "keys must be strings"
			}
			val, err := fromYAML(n.Content[i+1], keyPath(path, p.key), depth+1)
			if err != nil {
				return nil, err
			}
			p.val = val
			v.pairs = append(v.pairs, p)
		}
		return v, nil
	case yaml.ScalarNode:
		return fromYAMLScalar(n), nil
	}
	return &value{kind: kindBad, bad: "unsupported YAML node"}, nil
}

func fromYAMLScalar(n *yaml.Node) *value {
	switch tag := n.ShortTag(); tag {
	case "!!str", "!!timestamp":
		return &value{kind: kindString, text: n.Value}
	case "!!null":
		return &value{kind: kindNull}
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return &value{kind: kindBad, bad: "must be true or false"}
		}
		return &value{kind: kindBool, b: b, text: n.Value}
	case "!!int", "!!float":
		var x any
		if err := n.Decode(&x); err != nil {
			return &value{kind: kindBad, bad: "must be a number"}
		}
		v := &value{kind: kindNumber, text: n.Value}
		switch x := x.(type) {
		case int:
			v.num = int64(x)
		case int64:
			v.num = x
		case uint64:
			v.num = canonicalFloat(float64(x))
		case float64:
			v.num = canonicalFloat(x)
		default:
			return &value{kind: kindBad, bad: "must be a number"}
		}
		return v
	case "!!binary":
		return &value{kind: kindBad, bad: "binary values are not supported"}
	default:
		return &value{kind: kindBad, bad: fmt.Sprintf("tag %s is not supported", tag)}
	}
}

// canonicalFloat returns f as an int64 when it is integral and in range, nil
// when it is not finite, and f otherwise, so that a number reads back the
// same after a trip through JSON.
func canonicalFloat(f float64) any {
	switch {
	case math.IsInf(f, 0) || math.IsNaN(f):
		return nil
	case f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63:
		return int64(f)
	}
	return f
}

func canonicalNumber(text string) any {
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		return i
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil
	}
	return canonicalFloat(f)
}

// readJSON reads exactly one JSON value.
func readJSON(data []byte) (*value, error) {
	if !utf8.Valid(data) {
		return nil, Errors{{Rule: "must be valid UTF-8"}}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, Errors{{Rule: "must not be empty"}}
	}
	r := jsonReader{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	r.dec.UseNumber()
	root, err := r.read("", 0)
	if err != nil {
		return nil, err
	}
	end := r.dec.InputOffset()
	if _, err := r.dec.Token(); !errors.Is(err, io.EOF) {
		trailing := len(data) - len(bytes.TrimLeft(data[end:], " \t\r\n"))
		return nil, Errors{{Rule: fmt.Sprintf("json syntax: %s: trailing data after the manifest", r.position(int64(trailing)))}}
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
		return &value{kind: kindBool, b: t, text: strconv.FormatBool(t)}, nil
	case json.Number:
		return &value{kind: kindNumber, text: t.String(), num: canonicalNumber(t.String())}, nil
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
			seen := make(map[string]bool)
			for r.dec.More() {
				tok, err := r.dec.Token()
				if err != nil {
					return nil, r.syntax(err)
				}
				key, ok := tok.(string)
				if !ok {
					return nil, r.syntax(fmt.Errorf("object key is not a string"))
				}
				val, err := r.read(keyPath(path, key), depth+1)
				if err != nil {
					return nil, err
				}
				v.pairs = append(v.pairs, pair{key: key, dup: seen[key], val: val})
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
	var se *json.SyntaxError
	off := r.dec.InputOffset()
	if errors.As(err, &se) {
		// The offsets of Decoder.Token errors are not always from the
		// start of the input; Unmarshal's are.
		if uerr := json.Unmarshal(r.data, new(json.RawMessage)); uerr != nil {
			err = uerr
		}
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	switch {
	case errors.As(err, &se):
		off = se.Offset - 1
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
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

// Paths name fields as a reader of the manifest would: resources.memory,
// triggers[1].every, config["a b"].
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

// A rawSetter is a unit type that takes the text of a scalar as written and
// leaves judging it to Validate.
type rawSetter interface{ setRaw(string) }

var (
	rawSetterType = reflect.TypeFor[rawSetter]()
	networkType   = reflect.TypeFor[Network]()
	anyType       = reflect.TypeFor[any]()
	configType    = reflect.TypeFor[map[string]any]()
)

func reflectValue(s *Service) reflect.Value { return reflect.ValueOf(s).Elem() }

// decoder decodes a value tree into a Go value, collecting every problem.
type decoder struct{ errs Errors }

func (d *decoder) fail(path, rule string) {
	d.errs = append(d.errs, FieldError{Path: path, Rule: rule})
}

// decode stores v into out. A null leaves out as it is: null means unset.
func (d *decoder) decode(v *value, out reflect.Value, path string) {
	if v.kind == kindBad {
		d.fail(path, v.bad)
		return
	}
	if v.kind == kindNull {
		return
	}
	t := out.Type()
	switch {
	case reflect.PointerTo(t).Implements(rawSetterType):
		if v.kind != kindString && v.kind != kindNumber {
			d.fail(path, "must be a string or a number")
			return
		}
		out.Addr().Interface().(rawSetter).setRaw(strings.TrimSpace(v.text))
		return
	case t == networkType:
		d.decodeNetwork(v, out.Addr().Interface().(*Network), path)
		return
	case t == anyType:
		if x, ok := d.toAny(v, path); ok {
			out.Set(reflect.ValueOf(&x).Elem())
		}
		return
	case t == configType:
		if v.kind != kindMap {
			d.fail(path, "must be a mapping")
			return
		}
		if x, ok := d.toAny(v, path); ok {
			out.Set(reflect.ValueOf(x))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.decodeStruct(v, out, path)
	case reflect.String:
		switch v.kind {
		case kindString:
		case kindNumber, kindBool:
			d.fail(path, fmt.Sprintf("must be a string (quote %s to make it one)", v.text))
			return
		default:
			d.fail(path, "must be a string")
			return
		}
		out.SetString(v.text)
	case reflect.Bool:
		if v.kind != kindBool {
			d.fail(path, "must be true or false")
			return
		}
		out.SetBool(v.b)
	case reflect.Int:
		i, ok := v.num.(int64)
		if v.kind != kindNumber || !ok || out.OverflowInt(i) {
			d.fail(path, "must be an integer")
			return
		}
		out.SetInt(i)
	case reflect.Float64:
		switch {
		case v.kind != kindNumber:
			d.fail(path, "must be a number")
			return
		case v.num == nil:
			d.fail(path, "must be a finite number")
			return
		}
		switch n := v.num.(type) {
		case int64:
			out.SetFloat(float64(n))
		case float64:
			out.SetFloat(n)
		}
	case reflect.Slice:
		if v.kind != kindList {
			d.fail(path, "must be a list")
			return
		}
		s := reflect.MakeSlice(t, len(v.items), len(v.items))
		for i, item := range v.items {
			d.decode(item, s.Index(i), indexPath(path, i))
		}
		out.Set(s)
	default:
		panic("manifest: cannot decode into " + t.String())
	}
}

func (d *decoder) decodeStruct(v *value, out reflect.Value, path string) {
	if v.kind != kindMap {
		d.fail(path, "must be a mapping")
		return
	}
	fields := fieldsOf(out.Type())
	for _, p := range v.pairs {
		kp := keyPath(path, p.key)
		switch i, known := fields[p.key]; {
		case p.badKey != "":
			d.fail(kp, p.badKey)
		case p.dup:
			d.fail(kp, "duplicate key")
		case !known:
			d.fail(kp, "unknown field")
		default:
			d.decode(p.val, out.Field(i), kp)
		}
	}
}

// fieldsOf maps the json names of a struct's fields to their indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func (d *decoder) decodeNetwork(v *value, n *Network, path string) {
	switch v.kind {
	case kindString:
		n.setString(strings.TrimSpace(v.text))
	case kindList:
		hosts := make([]string, 0, len(v.items))
		for i, item := range v.items {
			if item.kind != kindString {
				d.fail(indexPath(path, i), "must be a string host:port")
				continue
			}
			hosts = append(hosts, item.text)
		}
		*n = Network{Hosts: hosts}
	default:
		d.fail(path, networkRule)
	}
}

// toAny turns a value into what encoding/json would decode it into, with
// numbers as int64 or float64.
func (d *decoder) toAny(v *value, path string) (any, bool) {
	switch v.kind {
	case kindNull:
		return nil, true
	case kindBool:
		return v.b, true
	case kindString:
		return v.text, true
	case kindNumber:
		if v.num == nil {
			d.fail(path, "must be a finite number")
			return nil, false
		}
		return v.num, true
	case kindList:
		l := make([]any, len(v.items))
		ok := true
		for i, item := range v.items {
			var itemOK bool
			l[i], itemOK = d.toAny(item, indexPath(path, i))
			ok = ok && itemOK
		}
		return l, ok
	case kindMap:
		m := make(map[string]any, len(v.pairs))
		ok := true
		for _, p := range v.pairs {
			kp := keyPath(path, p.key)
			switch {
			case p.badKey != "":
				d.fail(kp, p.badKey)
				ok = false
			case p.dup:
				d.fail(kp, "duplicate key")
				ok = false
			default:
				x, xOK := d.toAny(p.val, kp)
				m[p.key] = x
				ok = ok && xOK
			}
		}
		return m, ok
	}
	d.fail(path, v.bad)
	return nil, false
}
