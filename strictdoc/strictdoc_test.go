package strictdoc

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type testDoc struct{}

func (testDoc) Name() string { return "doc" }

type otherDoc struct{}

func (otherDoc) Name() string { return "other" }

func TestErrors(t *testing.T) {
	err := error(Errors[testDoc]{{Rule: "must be a mapping"}, {Path: "a.b", Rule: "unknown key"}})
	if got, want := err.Error(), "doc: must be a mapping\na.b: unknown key"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var mine Errors[testDoc]
	if !errors.As(err, &mine) || len(mine) != 2 {
		t.Errorf("errors.As(%v, Errors[testDoc]) = false, want true", err)
	}
	var other Errors[otherDoc]
	if errors.As(err, &other) {
		t.Errorf("errors.As(%v, Errors[otherDoc]) = true, want false: two kinds of document, two types", err)
	}
	nested := Nest[otherDoc]("policy", Errors[testDoc]{{Rule: "must be a mapping"}, {Path: "limits.memory", Rule: "r"}, {Path: `["<<"]`, Rule: "r"}})
	if got, want := nested.Error(), "policy: must be a mapping\npolicy.limits.memory: r\npolicy[\"<<\"]: r"; got != want {
		t.Errorf("Nest = %q, want %q", got, want)
	}
}

func TestPaths(t *testing.T) {
	tests := []struct{ path, key, want string }{
		{"", "name", "name"},
		{"limits", "memory", "limits.memory"},
		{"registries", "node.js", `registries["node.js"]`},
		{"config", "a b", `config["a b"]`},
		{"config", "", `config[""]`},
		{"", "<<", `["<<"]`},
	}
	for _, tt := range tests {
		if got := KeyPath(tt.path, tt.key); got != tt.want {
			t.Errorf("KeyPath(%q, %q) = %q, want %q", tt.path, tt.key, got, tt.want)
		}
	}
	if got, want := IndexPath("triggers", 1), "triggers[1]"; got != want {
		t.Errorf("IndexPath(triggers, 1) = %q, want %q", got, want)
	}
	for _, tt := range []struct{ parent, child, want string }{
		{"policy", "limits.memory", "policy.limits.memory"},
		{"policy", "", "policy"},
		{"", "limits", "limits"},
		{"config", `["a b"]`, `config["a b"]`},
		{"triggers", "[1].every", "triggers[1].every"},
	} {
		if got := JoinPath(tt.parent, tt.child); got != tt.want {
			t.Errorf("JoinPath(%q, %q) = %q, want %q", tt.parent, tt.child, got, tt.want)
		}
	}
}

// TestSameTree reads one document written in YAML and in JSON: the trees
// are the same.
func TestSameTree(t *testing.T) {
	y, err := YAML.Read([]byte("name: x\nlist: [1, 1.5, true, null]\nmap: {a: 1, a: 2}\n"), 3)
	if err != nil {
		t.Fatal(err)
	}
	j, err := JSON.Read([]byte(`{"name": "x", "list": [1, 1.5, true, null], "map": {"a": 1, "a": 2}}`), 3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(y, j) {
		t.Errorf("YAML and JSON trees differ:\n%#v\n%#v", y, j)
	}
	if dup := j.Pairs[2].Value.Pairs[1].Dup; !dup {
		t.Errorf("second key a: Dup = false, want true")
	}
}

// TestYAMLExtras: the YAML format reads what YAML has beyond the tree as
// Bad values and key rules, in one pass.
func TestYAMLExtras(t *testing.T) {
	root, err := YAML.Read([]byte(`
alias: &a 1
again: *a
<<: {x: 1}
? [a]
: 2
1: one
~: none
2024-01-02: a date key
date: 2024-01-02
bin: !!binary aGk=
mine: !thing x
inf: .inf
hex: 0x10
octal: 010
big: 1e18
yes: !!bool maybe
`), 10)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		key, keyRule string
		kind         Kind
		text, num    string
		rule         string
	}
	var got []row
	for _, p := range root.Pairs {
		r := row{key: p.Key, keyRule: p.KeyRule}
		if p.Value != nil {
			r.kind, r.text, r.num, r.rule = p.Value.Kind, p.Value.Text, p.Value.Num, p.Value.Rule
		}
		got = append(got, r)
	}
	want := []row{
		{"alias", "", Number, "1", "1", ""},
		{"again", "", Bad, "", "", "YAML aliases are not supported"},
		{"<<", "YAML merge keys are not supported", Null, "", "", ""},
		{"?", "key must be a string", Null, "", "", ""},
		{"1", "key must be a string (quote 1 to make it one)", Null, "", "", ""},
		{"~", "key must be a string (quote ~ to make it one)", Null, "", "", ""},
		{"2024-01-02", "", String, "a date key", "", ""},
		{"date", "", String, "2024-01-02", "", ""},
		{"bin", "", Bad, "", "", "YAML tag !!binary is not supported"},
		{"mine", "", Bad, "", "", "YAML tag !thing is not supported"},
		{"inf", "", Number, ".inf", "", ""},
		{"hex", "", Number, "0x10", "16", ""},
		{"octal", "", Number, "010", "8", ""},
		{"big", "", Number, "1e18", "1e+18", ""},
		{"yes", "", Bad, "", "", "must be true or false"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("YAML extras:\ngot  %v\nwant %v", got, want)
	}
}

func TestReadErrors(t *testing.T) {
	dec := Decoder[testDoc]{MaxDepth: 3, MaxSize: 64}
	deep := strings.Repeat("[", 5) + strings.Repeat("]", 5)
	tests := []struct {
		name string
		f    Format
		in   string
		want string
	}{
		{"two documents", YAML, "a: 1\n---\nb: 2\n", "doc: must be one YAML document, found another at line 2"},
		{"yaml syntax", YAML, "a: [\n", "doc: yaml syntax: line 1: did not find expected node content"},
		{"yaml deep", YAML, "a: " + deep + "\n", "a[0][0][0]: must not nest deeper than 3 levels"},
		{"json deep", JSON, `{"a": ` + deep + `}`, "a[0][0][0]: must not nest deeper than 3 levels"},
		{"json trailing", JSON, "{\"a\": 1}\n  x", "doc: json syntax: line 2, column 3: trailing data after the document"},
		{"json truncated", JSON, `{"a": 1`, "doc: json syntax: line 1, column 8: unexpected end of input"},
		{"json bad token", JSON, "{\n  \"a\": x}", "doc: json syntax: line 2, column 8: invalid character 'x' looking for beginning of value"},
		{"json empty", JSON, " \n", "doc: must not be empty"},
		{"yaml empty", YAML, "# nothing\n", "doc: must not be empty"},
		{"too large", YAML, strings.Repeat("#", 65), "doc: must be at most 64 bytes, got 65"},
		{"not utf-8", JSON, "\"\xff\"", "doc: must be valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dec.Read(tt.f, []byte(tt.in))
			var errs Errors[testDoc]
			if !errors.As(err, &errs) || err.Error() != tt.want {
				t.Errorf("Read(%q) = %v, want %s", tt.in, err, tt.want)
			}
		})
	}
	if v, err := dec.Read(JSON, []byte("\xef\xbb\xbf{}")); err != nil || v.Kind != Map {
		t.Errorf("Read(JSON with a byte order mark) = %+v, %v; want a mapping", v, err)
	}
}

func TestEmptyYAML(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "---\n"} {
		if v, err := YAML.Read([]byte(in), 1); err != nil || v != nil {
			t.Errorf("YAML.Read(%q) = %+v, %v; want nil: an empty document", in, v, err)
		}
	}
	if v, err := YAML.Read([]byte("~"), 1); err != nil || v == nil || v.Kind != Null || v.Text != "~" {
		t.Errorf("YAML.Read(~) = %+v, %v; want a Null written ~", v, err)
	}
	type s struct {
		A int `json:"a"`
	}
	got := s{A: 7}
	dec := Decoder[testDoc]{MaxDepth: 2, AllowEmpty: true}
	if err := dec.Decode(YAML, []byte("# defaults\n"), &got); err != nil || got.A != 7 {
		t.Errorf("Decode(empty, AllowEmpty) = %+v, %v; want the value left as it was", got, err)
	}
	if err := dec.Decode(YAML, []byte("~\n"), &got); err == nil || err.Error() != "doc: must not be null" {
		t.Errorf("Decode(~, AllowEmpty) = %v, want doc: must not be null", err)
	}
}

// A size is a unit type a hook decodes: the text as written, judged at
// once.
type size struct{ text string }

type inner struct {
	N    int      `json:"n"`
	Tags []string `json:"tags,omitempty"`
}

type doc struct {
	Name   string            `json:"name"`
	On     bool              `json:"on"`
	Count  int64             `json:"count"`
	Small  int8              `json:"small"`
	Ratio  float64           `json:"ratio"`
	List   []int             `json:"list"`
	Map    map[string]string `json:"map"`
	Inner  inner             `json:"inner"`
	Items  []inner           `json:"items"`
	Free   any               `json:"free"`
	Config map[string]any    `json:"config"`
	Size   size              `json:"size"`
	Raw    string            `json:"raw"`
	Skip   string            `json:"-"`
	hidden string
}

var docDecoder = Decoder[testDoc]{
	MaxDepth: 8,
	Hooks: []Hook{
		Type(Scalar(func(s string, out *size) error {
			if !strings.HasSuffix(s, "Mi") {
				return errors.New("must be a size like 64Mi")
			}
			*out = size{s}
			return nil
		})),
		Field[doc]("raw", Scalar(func(s string, out *string) error { *out = s; return nil })),
	},
}

// TestDecode: every rule, with the same words in YAML and in JSON.
func TestDecode(t *testing.T) {
	tests := []struct {
		name, yaml, json string
		want             []string
	}{
		{"string", "name: [a]", `{"name": ["a"]}`, []string{"name: must be a string, not a list"}},
		{"number for a string", "name: 1.20", `{"name": 1.20}`, []string{"name: must be a string (quote 1.20 to make it one)"}},
		{"boolean for a string", "name: true", `{"name": true}`, []string{"name: must be a string (quote true to make it one)"}},
		{"boolean", "on: 'yes'", `{"on": "yes"}`, []string{"on: must be true or false, not a string"}},
		{"integer", "count: '3'", `{"count": "3"}`, []string{"count: must be an integer, not a string"}},
		{"fraction", "count: 1.5", `{"count": 1.5}`, []string{"count: must be an integer, not 1.5"}},
		{"overflow", "small: 300", `{"small": 300}`, []string{"small: must be an integer from -128 to 127"}},
		{"huge", "count: 1e30", `{"count": 1e30}`, []string{"count: must be an integer from -9223372036854775808 to 9223372036854775807"}},
		{"number", "ratio: half", `{"ratio": "half"}`, []string{"ratio: must be a number, not a string"}},
		{"not finite", "ratio: .inf", `{"ratio": 1e999}`, []string{"ratio: must be a finite number"}},
		{"list", "list: 1", `{"list": 1}`, []string{"list: must be a list, not a number"}},
		{"list item", "list: [1, x]", `{"list": [1, "x"]}`, []string{"list[1]: must be an integer, not a string"}},
		{"map", "map: [a]", `{"map": ["a"]}`, []string{"map: must be a mapping, not a list"}},
		{"map value", "map: {a b: 1}", `{"map": {"a b": 1}}`, []string{`map["a b"]: must be a string (quote 1 to make it one)`}},
		{"struct", "inner: 1", `{"inner": 1}`, []string{"inner: must be a mapping, not a number"}},
		{"root", "[1]", `[1]`, []string{"doc: must be a mapping, not a list"}},
		{"null", "name: null", `{"name": null}`, []string{"name: must not be null"}},
		{"null item", "items: [null]", `{"items": [null]}`, []string{"items[0]: must not be null"}},
		{"null map value", "map: {a: null}", `{"map": {"a": null}}`, []string{"map.a: must not be null"}},
		{"null free-form field", "free: null", `{"free": null}`, []string{"free: must not be null"}},
		{"null unit", "size: null", `{"size": null}`, []string{"size: must not be null"}},
		{"unknown", "nmae: x", `{"nmae": "x"}`, []string{`nmae: unknown field "nmae" (did you mean "name"?)`}},
		{"unknown nested", "items: [{n: 1, tgas: []}]", `{"items": [{"n": 1, "tgas": []}]}`, []string{`items[0].tgas: unknown field "tgas" (did you mean "tags"?)`}},
		{"unknown far", "colour: x", `{"colour": "x"}`, []string{`colour: unknown field "colour"`}},
		{"tagged out", "Skip: x", `{"Skip": "x"}`, []string{`Skip: unknown field "Skip"`}},
		{"unexported", "hidden: x", `{"hidden": "x"}`, []string{`hidden: unknown field "hidden"`}},
		{"duplicate", "name: a\nname: b", `{"name": "a", "name": "b"}`, []string{"name: duplicate key"}},
		{"duplicate in free-form", "config: {a: {b: 1, b: 2}}", `{"config": {"a": {"b": 1, "b": 2}}}`, []string{"config.a.b: duplicate key"}},
		{"free-form not finite", "config: {a: [.inf]}", `{"config": {"a": [1e999]}}`, []string{"config.a[0]: must be a finite number"}},
		{"unit", "size: 64M", `{"size": "64M"}`, []string{"size: must be a size like 64Mi"}},
		{"unit as a list", "size: [1]", `{"size": [1]}`, []string{"size: must be a string or a number, not a list"}},
		{"field hook", "raw: [1]", `{"raw": [1]}`, []string{"raw: must be a string or a number, not a list"}},
		{"every problem, in order", "name: 1\non: 2\nlist: [a]\n", `{"name": 1, "on": 2, "list": ["a"]}`, []string{"name: must be a string (quote 1 to make it one)", "on: must be true or false, not a number", "list[0]: must be an integer, not a string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for f, in := range map[string]string{"yaml": tt.yaml, "json": tt.json} {
				format := YAML
				if f == "json" {
					format = JSON
				}
				var d doc
				err := docDecoder.Decode(format, []byte(in), &d)
				var errs Errors[testDoc]
				if !errors.As(err, &errs) {
					t.Fatalf("%s: Decode(%q) = %v, want an Errors", f, in, err)
				}
				if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
					t.Errorf("%s: Decode(%q) =\n%s\nwant\n%s", f, in, got, want)
				}
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	in := `
name: x
on: true
count: 0x10
small: -128
ratio: 2
list: [1, 2]
map: {a: b}
inner: {n: 1}
items: [{n: 2, tags: [t]}]
free: [1, 1.5, "s", null, {k: 1e3}]
config: {a: null, b: 2024-01-02}
size: " 64Mi "
raw: 0x10
`
	d := doc{Name: "default", List: []int{9, 9, 9}, Map: map[string]string{"old": "v"}, Inner: inner{N: 5, Tags: []string{"kept"}}}
	if err := docDecoder.Decode(YAML, []byte(in), &d); err != nil {
		t.Fatal(err)
	}
	want := doc{
		Name: "x", On: true, Count: 16, Small: -128, Ratio: 2,
		List:   []int{1, 2},
		Map:    map[string]string{"a": "b"},
		Inner:  inner{N: 1, Tags: []string{"kept"}},
		Items:  []inner{{N: 2, Tags: []string{"t"}}},
		Free:   []any{int64(1), 1.5, "s", nil, map[string]any{"k": int64(1000)}},
		Config: map[string]any{"a": nil, "b": "2024-01-02"},
		Size:   size{"64Mi"},
		Raw:    "0x10",
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Decode =\n%#v\nwant\n%#v", d, want)
	}
}

func TestDecodeYAMLNode(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("outer:\n  name: x\n  nmae: y\n"), &n); err != nil {
		t.Fatal(err)
	}
	var d doc
	err := docDecoder.DecodeYAMLNode(n.Content[0].Content[1], &d)
	if err == nil || err.Error() != `nmae: unknown field "nmae" (did you mean "name"?)` || d.Name != "x" {
		t.Errorf("DecodeYAMLNode = %v (name %q), want the unknown field, relative to the node", err, d.Name)
	}
}

func TestUnknownField(t *testing.T) {
	names := []string{"every", "input", "kind", "language", "limits", "listen", "max", "memory", "name", "per_service", "schedule", "state"}
	for key, want := range map[string]string{
		"memroy":     "memory", // transposition
		"nmae":       "name",
		"evry":       "every",
		"sate":       "state",
		"LISTEN":     "listen",
		"per_servce": "per_service",
		"lang":       "language", // the only name it begins
		"min":        "",         // two edits from max, in three letters
		"x":          "",
		"li":         "",
		"colour":     "",
	} {
		got := unknownField(key, names)
		w := `unknown field "` + key + `"`
		if want != "" {
			w += ` (did you mean "` + want + `"?)`
		}
		if got != w {
			t.Errorf("unknownField(%q) = %s, want %s", key, got, w)
		}
	}
}

func TestHookMisuse(t *testing.T) {
	for name, f := range map[string]func(){
		"no such field": func() { Field[doc]("nope", Scalar(func(string, *string) error { return nil })) },
		"wrong type":    func() { Field[doc]("count", Scalar(func(string, *string) error { return nil })) },
		"two hooks": func() {
			h := Type(Scalar(func(string, *size) error { return nil }))
			_ = Decoder[testDoc]{Hooks: []Hook{h, h}}.DecodeValue(&Value{Kind: Map}, new(doc))
		},
		"no hook for a unit": func() {
			_ = Decoder[testDoc]{}.DecodeValue(&Value{Kind: Map, Pairs: []Pair{{Key: "size", Value: &Value{Kind: Map}}}}, new(doc))
		},
		"no hook for a type": func() {
			_ = Decoder[testDoc]{}.DecodeValue(&Value{Kind: Map, Pairs: []Pair{{Key: "c", Value: &Value{Kind: Number, Num: "1"}}}}, new(struct {
				C complex128 `json:"c"`
			}))
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// lines is a third format, to show the seam: "key=value" lines, each a
// string field.
type lines struct{}

func (lines) Read(data []byte, maxDepth int) (*Value, error) {
	v := &Value{Kind: Map}
	seen := map[string]bool{}
	for i, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, val, ok := strings.Cut(l, "=")
		if !ok {
			return nil, &ReadError{Rule: "lines syntax: line " + string(rune('1'+i)) + ": want key=value"}
		}
		v.Pairs = append(v.Pairs, Pair{Key: k, Dup: seen[k], Value: &Value{Kind: String, Text: val}})
		seen[k] = true
	}
	return v, nil
}

func TestAnotherFormat(t *testing.T) {
	var d doc
	err := docDecoder.Decode(lines{}, []byte("name=x\nnmae=y\nname=z\nsize=64M\n"), &d)
	want := "nmae: unknown field \"nmae\" (did you mean \"name\"?)\nname: duplicate key\nsize: must be a size like 64Mi"
	if err == nil || err.Error() != want || d.Name != "x" {
		t.Errorf("Decode(lines) = %v (name %q), want\n%s", err, d.Name, want)
	}
	if err := docDecoder.Decode(lines{}, []byte("oops"), &d); err == nil || err.Error() != "doc: lines syntax: line 1: want key=value" {
		t.Errorf("Decode(bad lines) = %v", err)
	}
}
