package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Decoding is two steps. The source is first read into a tree of values
// (package strictdoc), which is the same for both formats; then the tree is
// decoded into a Service by reflection over the json tags (decoder), so the
// names Parse accepts are the names json.Marshal writes. Each step reports
// problems with the path of the field they concern.

// maxDepth bounds the nesting of a manifest, config and inputs included.
const maxDepth = 64

// document names the manifest in errors about it as a whole.
type document struct{}

// Name returns "manifest".
func (document) Name() string { return "manifest" }

var reader = strictdoc.Reader[document]{MaxDepth: maxDepth}

// readYAML reads exactly one YAML document.
func readYAML(data []byte) (*strictdoc.Value, error) {
	if !utf8.Valid(data) {
		return nil, Errors{{Rule: "must be valid UTF-8"}}
	}
	root, err := reader.YAML(data)
	if err == nil && root.Tag == "!!null" && root.Text == "" {
		return nil, Errors{{Rule: "must not be empty"}}
	}
	return root, err
}

// readJSON reads exactly one JSON value.
func readJSON(data []byte) (*strictdoc.Value, error) {
	if !utf8.Valid(data) {
		return nil, Errors{{Rule: "must be valid UTF-8"}}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, Errors{{Rule: "must not be empty"}}
	}
	return reader.JSON(data)
}

// refusal returns the rule a value breaks by its YAML form alone, or ""
// when it breaks none.
func refusal(v *strictdoc.Value) string {
	switch v.Kind {
	case strictdoc.Alias:
		return "aliases are not supported"
	case strictdoc.Tagged:
		if v.Tag == "!!binary" {
			return "binary values are not supported"
		}
		return fmt.Sprintf("tag %s is not supported", v.Tag)
	case strictdoc.Bad:
		return v.Rule
	}
	return ""
}

// keyRefusal returns the rule a mapping key breaks, or "" for a string.
func keyRefusal(p strictdoc.Pair) string {
	switch p.KeyTag {
	case "!!str":
		return ""
	case "!!merge":
		return "merge keys are not supported"
	}
	return "keys must be strings"
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

// canonicalNumber returns a number in JSON syntax (strictdoc.Value.Num) as
// an int64 or a float64, as canonicalFloat does; nil when it is empty (not
// finite) or not a number.
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

// A rawSetter is a unit type that takes the text of a scalar as written and
// leaves judging it to Validate.
type rawSetter interface{ setRaw(string) }

var (
	rawSetterType = reflect.TypeFor[rawSetter]()
	networkType   = reflect.TypeFor[Network]()
	anyType       = reflect.TypeFor[any]()
	configType    = reflect.TypeFor[map[string]any]()
)

// decoder decodes a value tree into a Go value, collecting every problem.
type decoder struct{ errs Errors }

func (d *decoder) fail(path, rule string) {
	d.errs = append(d.errs, FieldError{Path: path, Rule: rule})
}

// decode stores v into out. A null leaves out as it is: null means unset.
func (d *decoder) decode(v *strictdoc.Value, out reflect.Value, path string) {
	if rule := refusal(v); rule != "" {
		d.fail(path, rule)
		return
	}
	if v.Kind == strictdoc.Null {
		return
	}
	t := out.Type()
	switch {
	case reflect.PointerTo(t).Implements(rawSetterType):
		if v.Kind != strictdoc.String && v.Kind != strictdoc.Number {
			d.fail(path, "must be a string or a number")
			return
		}
		out.Addr().Interface().(rawSetter).setRaw(strings.TrimSpace(v.Text))
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
		if v.Kind != strictdoc.Map {
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
		switch v.Kind {
		case strictdoc.String:
		case strictdoc.Number, strictdoc.Bool:
			d.fail(path, fmt.Sprintf("must be a string (quote %s to make it one)", v.Text))
			return
		default:
			d.fail(path, "must be a string")
			return
		}
		out.SetString(v.Text)
	case reflect.Bool:
		if v.Kind != strictdoc.Bool {
			d.fail(path, "must be true or false")
			return
		}
		out.SetBool(v.Bool)
	case reflect.Int:
		i, ok := canonicalNumber(v.Num).(int64)
		if v.Kind != strictdoc.Number || !ok || out.OverflowInt(i) {
			d.fail(path, "must be an integer")
			return
		}
		out.SetInt(i)
	case reflect.Float64:
		if v.Kind != strictdoc.Number {
			d.fail(path, "must be a number")
			return
		}
		switch n := canonicalNumber(v.Num).(type) {
		case nil:
			d.fail(path, "must be a finite number")
		case int64:
			out.SetFloat(float64(n))
		case float64:
			out.SetFloat(n)
		}
	case reflect.Slice:
		if v.Kind != strictdoc.List {
			d.fail(path, "must be a list")
			return
		}
		s := reflect.MakeSlice(t, len(v.Items), len(v.Items))
		for i, item := range v.Items {
			d.decode(item, s.Index(i), strictdoc.IndexPath(path, i))
		}
		out.Set(s)
	default:
		panic("manifest: cannot decode into " + t.String())
	}
}

func (d *decoder) decodeStruct(v *strictdoc.Value, out reflect.Value, path string) {
	if v.Kind != strictdoc.Map {
		d.fail(path, "must be a mapping")
		return
	}
	fields := strictdoc.Fields(out.Type())
	for _, p := range v.Pairs {
		kp := strictdoc.KeyPath(path, p.Key)
		switch i, known := fields[p.Key]; {
		case keyRefusal(p) != "":
			d.fail(kp, keyRefusal(p))
		case p.Dup:
			d.fail(kp, "duplicate key")
		case !known:
			d.fail(kp, "unknown field")
		default:
			d.decode(p.Value, out.Field(i), kp)
		}
	}
}

func (d *decoder) decodeNetwork(v *strictdoc.Value, n *Network, path string) {
	switch v.Kind {
	case strictdoc.String:
		n.setString(strings.TrimSpace(v.Text))
	case strictdoc.List:
		hosts := make([]string, 0, len(v.Items))
		for i, item := range v.Items {
			if item.Kind != strictdoc.String {
				d.fail(strictdoc.IndexPath(path, i), "must be a string host:port")
				continue
			}
			hosts = append(hosts, item.Text)
		}
		*n = Network{Hosts: hosts}
	default:
		d.fail(path, networkRule)
	}
}

// toAny turns a value into what encoding/json would decode it into, with
// numbers as int64 or float64.
func (d *decoder) toAny(v *strictdoc.Value, path string) (any, bool) {
	switch v.Kind {
	case strictdoc.Null:
		return nil, true
	case strictdoc.Bool:
		return v.Bool, true
	case strictdoc.String:
		return v.Text, true
	case strictdoc.Number:
		n := canonicalNumber(v.Num)
		if n == nil {
			d.fail(path, "must be a finite number")
			return nil, false
		}
		return n, true
	case strictdoc.List:
		l := make([]any, len(v.Items))
		ok := true
		for i, item := range v.Items {
			var itemOK bool
			l[i], itemOK = d.toAny(item, strictdoc.IndexPath(path, i))
			ok = ok && itemOK
		}
		return l, ok
	case strictdoc.Map:
		m := make(map[string]any, len(v.Pairs))
		ok := true
		for _, p := range v.Pairs {
			kp := strictdoc.KeyPath(path, p.Key)
			switch {
			case keyRefusal(p) != "":
				d.fail(kp, keyRefusal(p))
				ok = false
			case p.Dup:
				d.fail(kp, "duplicate key")
				ok = false
			default:
				x, xOK := d.toAny(p.Value, kp)
				m[p.Key] = x
				ok = ok && xOK
			}
		}
		return m, ok
	}
	d.fail(path, refusal(v))
	return nil, false
}
