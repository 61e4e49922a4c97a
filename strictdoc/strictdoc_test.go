package strictdoc

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

type testDoc struct{}

func (testDoc) Name() string { return "doc" }

type otherDoc struct{}

func (otherDoc) Name() string { return "other" }

var reader = Reader[testDoc]{MaxDepth: 3}

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
}

func TestFields(t *testing.T) {
	type s struct {
		A      int `json:"a,omitempty"`
		B      int
		C      int `json:"-"`
		d      int
		E      int `json:",omitempty"`
		_      int
		Nested struct{} `json:"nested"`
	}
	_ = s{}.d
	got := Fields(reflect.TypeFor[s]())
	want := map[string]int{"a": 0, "B": 1, "E": 4, "nested": 6}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Fields = %v, want %v", got, want)
	}
}

// TestSameTree reads one document written in YAML and in JSON: the trees
// are the same but for YAML's tags.
func TestSameTree(t *testing.T) {
	y, err := reader.YAML([]byte("name: x\nlist: [1, 1.5, true, null]\nmap: {a: 1, a: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := reader.JSON([]byte(`{"name": "x", "list": [1, 1.5, true, null], "map": {"a": 1, "a": 2}}`))
	if err != nil {
		t.Fatal(err)
	}
	clearTags(y)
	if !reflect.DeepEqual(y, j) {
		t.Errorf("YAML and JSON trees differ:\n%#v\n%#v", y, j)
	}
	if dup := j.Pairs[2].Value.Pairs[1].Dup; !dup {
		t.Errorf("second key a: Dup = false, want true")
	}
}

// clearTags removes the tags JSON has not: its keys are all !!str.
func clearTags(v *Value) {
	v.Tag = ""
	for _, it := range v.Items {
		clearTags(it)
	}
	for _, p := range v.Pairs {
		clearTags(p.Value)
	}
}

// TestYAMLExtras: the reader records what YAML has beyond JSON and refuses
// none of it; the document's package does.
func TestYAMLExtras(t *testing.T) {
	root, err := reader.YAML([]byte(`
alias: &a 1
again: *a
<<: {x: 1}
? [a]
: 2
1: one
date: 2024-01-02
bin: !!binary aGk=
mine: !thing x
inf: .inf
hex: 0x10
big: 1e18
yes: !!bool maybe
`))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		key, keyTag string
		kind        Kind
		tag, num    string
	}
	var got []row
	for _, p := range root.Pairs {
		r := row{key: p.Key, keyTag: p.KeyTag}
		if p.Value != nil {
			r.kind, r.tag, r.num = p.Value.Kind, p.Value.Tag, p.Value.Num
		}
		got = append(got, r)
	}
	want := []row{
		{"alias", "!!str", Number, "!!int", "1"},
		{"again", "!!str", Alias, "", ""},
		{"<<", "!!merge", Null, "", ""}, // not read
		{"?", "", Null, "", ""},         // not read
		{"1", "!!int", String, "!!str", ""},
		{"date", "!!str", String, "!!timestamp", ""},
		{"bin", "!!str", Tagged, "!!binary", ""},
		{"mine", "!!str", Tagged, "!thing", ""},
		{"inf", "!!str", Number, "!!float", ""},
		{"hex", "!!str", Number, "!!int", "16"},
		{"big", "!!str", Number, "!!float", "1e+18"},
		{"yes", "!!str", Bad, "!!bool", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("YAML extras:\ngot  %v\nwant %v", got, want)
	}
}

func TestReadErrors(t *testing.T) {
	deep := strings.Repeat("[", 5) + strings.Repeat("]", 5)
	tests := []struct {
		name, in string
		json     bool
		want     string
	}{
		{"two documents", "a: 1\n---\nb: 2\n", false, "doc: must be one YAML document, found another at line 2"},
		{"yaml syntax", "a: [\n", false, "doc: yaml syntax: line 1: did not find expected node content"},
		{"yaml deep", "a: " + deep + "\n", false, "a[0][0][0]: must not nest deeper than 3 levels"},
		{"json deep", `{"a": ` + deep + `}`, true, "a[0][0][0]: must not nest deeper than 3 levels"},
		{"json trailing", "{\"a\": 1}\n  x", true, "doc: json syntax: line 2, column 3: trailing data after the doc"},
		{"json truncated", `{"a": 1`, true, "doc: json syntax: line 1, column 8: unexpected end of input"},
		{"json bad token", "{\n  \"a\": x}", true, "doc: json syntax: line 2, column 8: invalid character 'x' looking for beginning of value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := reader.YAML
			if tt.json {
				read = reader.JSON
			}
			_, err := read([]byte(tt.in))
			var errs Errors[testDoc]
			if !errors.As(err, &errs) || err.Error() != tt.want {
				t.Errorf("read(%q) = %v, want %s", tt.in, err, tt.want)
			}
		})
	}
}

func TestEmptyYAML(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "---\n"} {
		v, err := reader.YAML([]byte(in))
		if err != nil || v.Kind != Null || v.Tag != "!!null" || v.Text != "" {
			t.Errorf("YAML(%q) = %+v, %v; want an empty Null", in, v, err)
		}
	}
	if v, err := reader.YAML([]byte("~")); err != nil || v.Kind != Null || v.Text != "~" {
		t.Errorf("YAML(~) = %+v, %v; want a Null written ~", v, err)
	}
}
