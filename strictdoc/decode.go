package strictdoc

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// A Decoder decodes documents of kind D into Go values by the rules in the
// package documentation: the names of a struct's fields are those of its
// json tags, so the names a document accepts are those json.Marshal writes.
// Every error it returns is an Errors[D] listing every problem found, in
// document order. A Decoder is a value with no state: safe for concurrent
// use.
//
// It decodes structs, strings, booleans, integers, floats, slices, maps
// with string keys and empty interfaces (any: the value as encoding/json
// would decode it, with numbers as int64 when integral, float64 otherwise,
// and nulls as nil). Decoding into any other kind of type panics, as does
// a struct with an embedded field or with unexported fields only. A type
// whose document form is not its Go shape (a size written "64Mi", a type
// with its own UnmarshalJSON) needs a Hook: the Decoder cannot tell, and
// would decode it by its exported fields.
type Decoder[D Doc] struct {
	// MaxSize bounds a document, in bytes. Zero: no bound.
	MaxSize int
	// MaxDepth bounds nesting: a value more than MaxDepth levels below
	// the top-level value is an error at its path, and reading stops
	// there.
	MaxDepth int
	// AllowEmpty makes an empty document (YAML: nothing but white space
	// and comments) leave the value as it is, its defaults, rather than
	// be refused with "must not be empty". JSON has no empty document.
	AllowEmpty bool
	// Hooks decode the types and struct fields the rules above do not
	// cover, or cover otherwise. A Field hook takes precedence over a
	// Type hook. A value that is null or that the format refused (a YAML
	// alias) is reported without calling any hook.
	Hooks []Hook
}

// Decode reads data written in format f and decodes it onto *out, over
// what *out holds: a key the document leaves out keeps its value, a list
// or a map in the document replaces the one in *out. out must be a
// non-nil pointer. Decode is Read then DecodeValue.
func (d Decoder[D]) Decode(f Format, data []byte, out any) error {
	root, err := d.Read(f, data)
	if err != nil {
		return err
	}
	return d.DecodeValue(root, out)
}

var bom = []byte("\xef\xbb\xbf")

// Read is the first step of Decode: it checks data's size and encoding and
// reads it with f. The root is nil for an empty document when AllowEmpty
// is set.
func (d Decoder[D]) Read(f Format, data []byte) (*Value, error) {
	if d.MaxSize > 0 && len(data) > d.MaxSize {
		return nil, Errors[D]{{Rule: fmt.Sprintf("must be at most %d bytes, got %d", d.MaxSize, len(data))}}
	}
	data = bytes.TrimPrefix(data, bom)
	if !utf8.Valid(data) {
		return nil, Errors[D]{{Rule: "must be valid UTF-8"}}
	}
	root, err := f.Read(data, d.MaxDepth)
	return d.root(root, err)
}

// root turns what a Format read into Read's result.
func (d Decoder[D]) root(root *Value, err error) (*Value, error) {
	if err != nil {
		var re *ReadError
		if errors.As(err, &re) {
			return nil, Errors[D]{{Path: re.Path, Rule: re.Rule}}
		}
		return nil, Errors[D]{{Rule: err.Error()}}
	}
	if root == nil && !d.AllowEmpty {
		return nil, Errors[D]{{Rule: "must not be empty"}}
	}
	return root, nil
}

// DecodeYAMLNode decodes a node the YAML package has parsed already, as an
// UnmarshalYAML method receives it, onto *out, like Decode. Paths are
// relative to the node.
func (d Decoder[D]) DecodeYAMLNode(n *yaml.Node, out any) error {
	root, err := d.root(readYAMLNode(n, d.MaxDepth))
	if err != nil {
		return err
	}
	return d.DecodeValue(root, out)
}

// DecodeValue is the second step of Decode: it decodes a tree onto *out.
// A nil root, an empty document, leaves *out as it is.
func (d Decoder[D]) DecodeValue(root *Value, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic(fmt.Sprintf("strictdoc: decode into %T, want a non-nil pointer", out))
	}
	if root == nil {
		return nil
	}
	s := newState(d.Hooks)
	s.decode(root, rv.Elem(), "", nil)
	if len(s.errs) == 0 {
		return nil
	}
	errs := make(Errors[D], len(s.errs))
	for i, p := range s.errs {
		errs[i] = FieldError[D]{Path: p.path, Rule: p.rule}
	}
	return errs
}

// A Hook decodes the values of one Go type (Type), or one field of a
// struct type (Field), in place of the generic rules.
type Hook struct {
	typ   reflect.Type // the value's type; for a Field hook, the struct's
	field string       // "" for a Type hook
	fn    hookFunc
}

type hookFunc func(c *Cursor, v *Value, out reflect.Value)

// Type returns a Hook that decodes every value of type T with fn.
func Type[T any](fn func(c *Cursor, v *Value, out *T)) Hook {
	return Hook{typ: reflect.TypeFor[T](), fn: func(c *Cursor, v *Value, out reflect.Value) {
		fn(c, v, out.Addr().Interface().(*T))
	}}
}

// Field returns a Hook that decodes with fn the field of struct type S
// that documents name name (its json name), of type F. It panics when S
// has no such field.
func Field[S, F any](name string, fn func(c *Cursor, v *Value, out *F)) Hook {
	st, ft := reflect.TypeFor[S](), reflect.TypeFor[F]()
	if st.Kind() != reflect.Struct {
		panic(fmt.Sprintf("strictdoc: field hook on %s, which is not a struct", st))
	}
	if i, ok := fieldsOf(st).index[name]; !ok || st.Field(i).Type != ft {
		panic(fmt.Sprintf("strictdoc: %s has no field %q of type %s", st, name, ft))
	}
	return Hook{typ: st, field: name, fn: func(c *Cursor, v *Value, out reflect.Value) {
		fn(c, v, out.Addr().Interface().(*F))
	}}
}

// Scalar returns the function of a Type or Field hook for a value written
// as one scalar, a string or a number, and kept as written: a size (64Mi),
// a duration (5s), a CPU share (500m). set gets the text, white space
// around it trimmed (a YAML number as written: 0x10, 1.0); the error it
// returns, if any, is the rule the text breaks, reported at the value's
// path. A set that always returns nil leaves judging the text to the
// document's validation.
func Scalar[T any](set func(text string, out *T) error) func(c *Cursor, v *Value, out *T) {
	return func(c *Cursor, v *Value, out *T) {
		if v.Kind != String && v.Kind != Number {
			c.Fail("must be a string or a number, not " + v.Kind.String())
			return
		}
		if err := set(strings.TrimSpace(v.Text), out); err != nil {
			c.Fail(err.Error())
		}
	}
}

// A Cursor is where a Hook is in the document being decoded: it reports
// problems at the value's path and decodes parts of the value by the
// document's rules. It is valid only during the hook's call.
type Cursor struct {
	s    *state
	path string
}

// Path returns the path of the value the hook decodes.
func (c *Cursor) Path() string { return c.path }

// Fail reports that the value breaks rule.
func (c *Cursor) Fail(rule string) { c.s.fail(c.path, rule) }

// Decode decodes v onto *out (a non-nil pointer) by the document's rules
// and hooks, at the cursor's path: a hook decodes the parts of its value,
// or the value as another type (a list of strings), this way. out must not
// be of the type the hook decodes.
func (c *Cursor) Decode(v *Value, out any) {
	c.s.decode(v, reflect.ValueOf(out).Elem(), c.path, nil)
}

type problem struct{ path, rule string }

type fieldKey struct {
	typ  reflect.Type
	name string
}

// state is one decoding: the hooks by type and field, and the problems
// found.
type state struct {
	types  map[reflect.Type]hookFunc
	fields map[fieldKey]hookFunc
	errs   []problem
}

func newState(hooks []Hook) *state {
	s := &state{types: map[reflect.Type]hookFunc{}, fields: map[fieldKey]hookFunc{}}
	for _, h := range hooks {
		if h.field == "" {
			if s.types[h.typ] != nil {
				panic("strictdoc: two hooks for " + h.typ.String())
			}
			s.types[h.typ] = h.fn
			continue
		}
		k := fieldKey{h.typ, h.field}
		if s.fields[k] != nil {
			panic(fmt.Sprintf("strictdoc: two hooks for field %q of %s", h.field, h.typ))
		}
		s.fields[k] = h.fn
	}
	return s
}

func (s *state) fail(path, rule string) {
	s.errs = append(s.errs, problem{path, rule})
}

// decode decodes v onto out, which is addressable, with the field hook
// fieldHook when v is a struct field that has one.
func (s *state) decode(v *Value, out reflect.Value, path string, fieldHook hookFunc) {
	switch v.Kind {
	case Bad:
		s.fail(path, v.Rule)
		return
	case Null:
		if v.Text == "" {
			s.fail(path, "must not be null (an empty value is null)")
		} else {
			s.fail(path, "must not be null")
		}
		return
	}
	t := out.Type()
	if h := fieldHook; h != nil {
		h(&Cursor{s, path}, v, out)
		return
	}
	if h := s.types[t]; h != nil {
		h(&Cursor{s, path}, v, out)
		return
	}
	not := ", not " + v.Kind.String()
	switch t.Kind() {
	case reflect.Struct:
		s.decodeStruct(v, out, path)
	case reflect.String:
		switch v.Kind {
		case String:
			out.SetString(v.Text)
		case Number, Bool:
			s.fail(path, fmt.Sprintf("must be a string (quote %s to make it one)", v.Text))
		default:
			s.fail(path, "must be a string"+not)
		}
	case reflect.Bool:
		if v.Kind != Bool {
			s.fail(path, "must be true or false"+not)
			return
		}
		out.SetBool(v.Bool)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Kind != Number {
			s.fail(path, "must be an integer"+not)
			return
		}
		switch n := canonicalNumber(v.Num).(type) {
		case int64:
			if out.OverflowInt(n) {
				s.fail(path, intRange(t))
				return
			}
			out.SetInt(n)
		case float64:
			if n == math.Trunc(n) {
				s.fail(path, intRange(t))
				return
			}
			s.fail(path, "must be an integer, not "+v.Text)
		default:
			s.fail(path, "must be an integer, not "+v.Text)
		}
	case reflect.Float32, reflect.Float64:
		if v.Kind != Number {
			s.fail(path, "must be a number"+not)
			return
		}
		var f float64
		switch n := canonicalNumber(v.Num).(type) {
		case int64:
			f = float64(n)
		case float64:
			f = n
		default:
			s.fail(path, "must be a finite number")
			return
		}
		if out.OverflowFloat(f) {
			s.fail(path, "must be a finite number")
			return
		}
		out.SetFloat(f)
	case reflect.Slice:
		if v.Kind != List {
			s.fail(path, "must be a list"+not)
			return
		}
		l := reflect.MakeSlice(t, len(v.Items), len(v.Items))
		for i, item := range v.Items {
			s.decodeElem(item, l.Index(i), IndexPath(path, i))
		}
		out.Set(l)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			panic("strictdoc: cannot decode into " + t.String() + ": keys must be strings")
		}
		if v.Kind != Map {
			s.fail(path, "must be a mapping"+not)
			return
		}
		m := reflect.MakeMapWithSize(t, len(v.Pairs))
		for _, p := range v.Pairs {
			kp := KeyPath(path, p.Key)
			if rule := pairRule(p); rule != "" {
				s.fail(kp, rule)
				continue
			}
			elem := reflect.New(t.Elem()).Elem()
			s.decodeElem(p.Value, elem, kp)
			m.SetMapIndex(reflect.ValueOf(p.Key).Convert(t.Key()), elem)
		}
		out.Set(m)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			panic("strictdoc: cannot decode into " + t.String())
		}
		s.decodeElem(v, out, path)
	default:
		panic("strictdoc: cannot decode into " + t.String())
	}
}

// decodeElem decodes an item of a list or a value of a map: by decode,
// unless it is free-form (any), whose null is data.
func (s *state) decodeElem(v *Value, out reflect.Value, path string) {
	if out.Kind() != reflect.Interface || out.NumMethod() != 0 {
		s.decode(v, out, path, nil)
		return
	}
	if x, ok := s.toAny(v, path); ok && x != nil {
		out.Set(reflect.ValueOf(&x).Elem())
	}
}

func (s *state) decodeStruct(v *Value, out reflect.Value, path string) {
	if v.Kind != Map {
		s.fail(path, "must be a mapping, not "+v.Kind.String())
		return
	}
	t := out.Type()
	fields := fieldsOf(t)
	if len(fields.names) == 0 && t.NumField() > 0 {
		panic("strictdoc: cannot decode into " + t.String() + ", which has no exported fields: it needs a hook")
	}
	for _, p := range v.Pairs {
		kp := KeyPath(path, p.Key)
		if rule := pairRule(p); rule != "" {
			s.fail(kp, rule)
			continue
		}
		i, ok := fields.index[p.Key]
		if !ok {
			s.fail(kp, unknownField(p.Key, fields.names))
			continue
		}
		s.decode(p.Value, out.Field(i), kp, s.fields[fieldKey{t, p.Key}])
	}
}

// pairRule returns the rule a mapping entry breaks by its key, or "".
func pairRule(p Pair) string {
	switch {
	case p.KeyRule != "":
		return p.KeyRule
	case p.Dup:
		return "duplicate key"
	}
	return ""
}

// toAny turns a value into what encoding/json would decode it into, with
// numbers as int64 or float64 (canonicalNumber). A null in it is nil: a
// free-form value is data, where null is a value like any other.
func (s *state) toAny(v *Value, path string) (any, bool) {
	switch v.Kind {
	case Null:
		return nil, true
	case Bool:
		return v.Bool, true
	case String:
		return v.Text, true
	case Number:
		n := canonicalNumber(v.Num)
		if n == nil {
			s.fail(path, "must be a finite number")
			return nil, false
		}
		return n, true
	case List:
		l := make([]any, len(v.Items))
		ok := true
		for i, item := range v.Items {
			var itemOK bool
			l[i], itemOK = s.toAny(item, IndexPath(path, i))
			ok = ok && itemOK
		}
		return l, ok
	case Map:
		m := make(map[string]any, len(v.Pairs))
		ok := true
		for _, p := range v.Pairs {
			kp := KeyPath(path, p.Key)
			if rule := pairRule(p); rule != "" {
				s.fail(kp, rule)
				ok = false
				continue
			}
			x, xOK := s.toAny(p.Value, kp)
			m[p.Key] = x
			ok = ok && xOK
		}
		return m, ok
	}
	s.fail(path, v.Rule)
	return nil, false
}

// canonicalNumber returns a number in JSON syntax (Value.Num) as an int64
// when it is integral and in range, as a float64 otherwise, so that a
// number reads back the same after a trip through JSON; nil when it is
// empty (not finite) or out of float64's range.
func canonicalNumber(text string) any {
	if i, err := strconv.ParseInt(text, 10, 64); err == nil && (i != 0 || !strings.HasPrefix(text, "-")) {
		return i
	}
	f, err := strconv.ParseFloat(text, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange), math.IsInf(f, 0), math.IsNaN(f):
		return nil
	case f == 0 && math.Signbit(f):
		return f // -0 stays a float: int64 has no negative zero
	case f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63:
		return int64(f)
	}
	return f
}

// intRange is the rule of an integer of type t.
func intRange(t reflect.Type) string {
	bits := t.Bits()
	return fmt.Sprintf("must be an integer from %d to %d", int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
}

// unknownField says a key is not a field, suggesting the field name the
// key is most likely a typo of: the nearest, when at most two edits away
// (a transposition counts one) and fewer than half the key's length; else
// the only one the key begins, when it has three characters or more
// ("lang" for "language").
func unknownField(key string, names []string) string {
	k := strings.ToLower(key)
	best, bestD := "", 3
	for _, name := range names {
		if d := editDistance(k, name); d < bestD {
			best, bestD = name, d
		}
	}
	if best == "" || 2*bestD >= len(key) {
		best = ""
		for _, name := range names {
			if len(k) < 3 || !strings.HasPrefix(name, k) {
				continue
			}
			if best != "" {
				best = ""
				break
			}
			best = name
		}
	}
	if best == "" {
		return fmt.Sprintf("unknown field %q", key)
	}
	return fmt.Sprintf("unknown field %q (did you mean %q?)", key, best)
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// bytes each count one. Strings longer than 64 bytes are far from all.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// structFields are the fields of a struct type by the names documents use
// for them.
type structFields struct {
	index map[string]int
	names []string // sorted
}

var fieldCache sync.Map // reflect.Type → *structFields

// fieldsOf maps the names documents use for the fields of struct type t
// to their indexes: the name in the field's json tag, or the Go name when
// the tag gives none. Unexported fields and fields tagged "-" have no
// name.
func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	f := &structFields{index: make(map[string]int, t.NumField())}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "-" {
			continue
		}
		if sf.Anonymous {
			panic(fmt.Sprintf("strictdoc: cannot decode into %s: embedded field %s", t, sf.Name))
		}
		if name == "" {
			name = sf.Name
		}
		f.index[name] = i
		f.names = append(f.names, name)
	}
	sort.Strings(f.names)
	fieldCache.Store(t, f)
	return f
}
