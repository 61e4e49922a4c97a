package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// MaxSize is the largest policy document, in bytes, that Parse accepts.
const MaxSize = 1 << 20

// maxDepth bounds the nesting of a policy document.
const maxDepth = 32

// document names the policy in errors about it as a whole.
type document struct{}

// Name returns "policy".
func (document) Name() string { return "policy" }

var reader = strictdoc.Reader[document]{MaxDepth: maxDepth}

// FieldError is one problem with a policy, at the path of the key it
// concerns: "trusted_hubs[1].key", "limits.memory.max", "rules[2]
// (no-weekend-jobs)". An empty Path is the policy as a whole, and its Error
// reads "policy: rule".
type FieldError = strictdoc.FieldError[document]

// Errors is every problem Parse, Validate or Compile found, in document
// order. It is a type of its own: errors.As tells it from a manifest's
// Errors.
type Errors = strictdoc.Errors[document]

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
		return errTooLarge(data)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return Errors{{Rule: "must be valid UTF-8"}}
	}
	var (
		root *strictdoc.Value
		err  error
	)
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		// JSON, or a YAML flow mapping: JSON's errors are the clearer
		// ones for a document that is neither.
		root, err = reader.JSON(data)
		if err != nil {
			if y, yerr := reader.YAML(data); yerr == nil {
				root, err = y, nil
			}
		}
	} else {
		root, err = reader.YAML(data)
	}
	if err != nil {
		return err
	}
	return p.decodeValue(root)
}

func errTooLarge(data []byte) error {
	return Errors{{Rule: fmt.Sprintf("must be at most %d bytes, got %d", MaxSize, len(data))}}
}

func (p *Policy) decodeValue(root *strictdoc.Value) error {
	if root.Kind == strictdoc.Null {
		return nil // an empty document: the defaults
	}
	if root.Kind != strictdoc.Map {
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
	return p.decodeNormalized(reader.Node(n))
}

// UnmarshalJSON is UnmarshalYAML for JSON.
func (p *Policy) UnmarshalJSON(data []byte) error {
	if len(data) > MaxSize {
		return errTooLarge(data)
	}
	return p.decodeNormalized(reader.JSON(data))
}

// decodeNormalized decodes root, as read with err, onto p and normalizes p.
func (p *Policy) decodeNormalized(root *strictdoc.Value, err error) error {
	if err != nil {
		return err
	}
	if err := p.decodeValue(root); err != nil {
		return err
	}
	p.Normalize()
	return nil
}

// refusal returns the rule a value breaks by its YAML form alone, or ""
// when it breaks none.
func refusal(v *strictdoc.Value) string {
	switch {
	case v.Kind == strictdoc.Alias:
		return "YAML aliases are not supported"
	case v.Kind == strictdoc.Tagged, v.Tag == "!!timestamp":
		return fmt.Sprintf("YAML tag %s is not supported", v.Tag)
	case v.Kind == strictdoc.Number && v.Num == "":
		return "must be a finite number"
	case v.Kind == strictdoc.Bad:
		return v.Rule
	}
	return ""
}

// keyRefusal returns the rule a mapping key breaks, or "" for a key that
// is a scalar: 1 is the key "1".
func keyRefusal(p strictdoc.Pair) string {
	switch p.KeyTag {
	case "!!merge":
		return "YAML merge keys are not supported"
	case "":
		return "keys must be strings"
	}
	return ""
}

// reJSON re-encodes v, for types that decode themselves. A value the
// policy refuses, and the value of a key it refuses, are null.
func reJSON(v *strictdoc.Value) []byte {
	var b bytes.Buffer
	writeJSON(&b, v)
	return b.Bytes()
}

func writeJSON(b *bytes.Buffer, v *strictdoc.Value) {
	if v == nil || refusal(v) != "" {
		b.WriteString("null")
		return
	}
	switch v.Kind {
	case strictdoc.Null:
		b.WriteString("null")
	case strictdoc.Bool:
		b.WriteString(strconv.FormatBool(v.Bool))
	case strictdoc.Number:
		b.WriteString(v.Num)
	case strictdoc.String:
		s, _ := json.Marshal(v.Text)
		b.Write(s)
	case strictdoc.List:
		b.WriteByte('[')
		for i, it := range v.Items {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, it)
		}
		b.WriteByte(']')
	case strictdoc.Map:
		b.WriteByte('{')
		for i, p := range v.Pairs {
			if i > 0 {
				b.WriteByte(',')
			}
			s, _ := json.Marshal(p.Key)
			b.Write(s)
			b.WriteByte(':')
			writeJSON(b, p.Value)
		}
		b.WriteByte('}')
	}
}

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

func (d *decoder) decode(v *strictdoc.Value, out reflect.Value, path string) {
	if rule := refusal(v); rule != "" {
		d.fail(path, rule)
		return
	}
	if v.Kind == strictdoc.Null {
		out.SetZero()
		return
	}
	t := out.Type()
	if t != policyType && reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := out.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(reJSON(v)); err != nil {
			d.fail(path, strings.TrimPrefix(err.Error(), "json: "))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.decodeStruct(v, out, path)
	case reflect.String:
		if v.Kind != strictdoc.String {
			d.fail(path, "must be a string, not "+v.Kind.String())
			return
		}
		out.SetString(v.Text)
	case reflect.Bool:
		if v.Kind != strictdoc.Bool {
			d.fail(path, "must be true or false, not "+v.Kind.String())
			return
		}
		out.SetBool(v.Bool)
	case reflect.Int:
		if v.Kind != strictdoc.Number {
			d.fail(path, "must be a whole number, not "+v.Kind.String())
			return
		}
		n, err := strconv.ParseInt(v.Num, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(v.Num, 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				d.fail(path, "must be a whole number, not "+v.Num)
				return
			}
			n = int64(f)
		}
		if out.OverflowInt(n) {
			d.fail(path, "number out of range: "+v.Num)
			return
		}
		out.SetInt(n)
	case reflect.Float64:
		if v.Kind != strictdoc.Number {
			d.fail(path, "must be a number, not "+v.Kind.String())
			return
		}
		f, err := strconv.ParseFloat(v.Num, 64)
		if err != nil || math.IsInf(f, 0) {
			d.fail(path, "number out of range: "+v.Num)
			return
		}
		out.SetFloat(f)
	case reflect.Slice:
		if v.Kind != strictdoc.List {
			d.fail(path, "must be a list, not "+v.Kind.String())
			return
		}
		s := reflect.MakeSlice(t, len(v.Items), len(v.Items))
		for i, it := range v.Items {
			d.decode(it, s.Index(i), strictdoc.IndexPath(path, i))
		}
		out.Set(s)
	case reflect.Map:
		if v.Kind != strictdoc.Map {
			d.fail(path, "must be a mapping, not "+v.Kind.String())
			return
		}
		m := reflect.MakeMapWithSize(t, len(v.Pairs))
		for _, p := range v.Pairs {
			kp := strictdoc.KeyPath(path, p.Key)
			switch {
			case p.Dup:
				d.fail(kp, "duplicate key")
				continue
			case keyRefusal(p) != "":
				d.fail(kp, keyRefusal(p))
				continue
			}
			elem := reflect.New(t.Elem()).Elem()
			d.decode(p.Value, elem, kp)
			m.SetMapIndex(reflect.ValueOf(p.Key).Convert(t.Key()), elem)
		}
		out.Set(m)
	default:
		d.fail(path, "unsupported type "+t.String())
	}
}

func (d *decoder) decodeStruct(v *strictdoc.Value, out reflect.Value, path string) {
	if v.Kind != strictdoc.Map {
		d.fail(path, "must be a mapping, not "+v.Kind.String())
		return
	}
	fields := strictdoc.Fields(out.Type())
	for _, p := range v.Pairs {
		kp := strictdoc.KeyPath(path, p.Key)
		idx, known := fields[p.Key]
		switch {
		case p.Dup:
			d.fail(kp, "duplicate key")
		case keyRefusal(p) != "":
			d.fail(kp, keyRefusal(p))
		case !known && refusal(p.Value) != "":
			d.fail(kp, refusal(p.Value))
		case !known:
			d.fail(kp, unknownKey(p.Key, fields))
		default:
			d.decode(p.Value, out.Field(idx), kp)
		}
	}
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
