package strictdoc

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// TestTOMLDecode: the rules of TestDecode, written in TOML, with the same
// words.
func TestTOMLDecode(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"string", `name = ["a"]`, []string{"name: must be a string, not a list"}},
		{"number for a string", `name = 1.20`, []string{"name: must be a string (quote 1.20 to make it one)"}},
		{"boolean for a string", `name = true`, []string{"name: must be a string (quote true to make it one)"}},
		{"boolean", `on = "yes"`, []string{"on: must be true or false, not a string"}},
		{"integer", `count = "3"`, []string{"count: must be an integer, not a string"}},
		{"fraction", `count = 1.5`, []string{"count: must be an integer, not 1.5"}},
		{"overflow", `small = 300`, []string{"small: must be an integer from -128 to 127"}},
		{"huge", `count = 1e30`, []string{"count: must be an integer from -9223372036854775808 to 9223372036854775807"}},
		{"beyond 64 bits", `count = 9223372036854775808`, []string{"count: 9223372036854775808 does not fit in a 64-bit integer"}},
		{"not finite", `ratio = inf`, []string{"ratio: must be a finite number"}},
		{"list item", `list = [1, "x"]`, []string{"list[1]: must be an integer, not a string"}},
		{"map", `map = ["a"]`, []string{"map: must be a mapping, not a list"}},
		{"map value", `map = {"a b" = 1}`, []string{`map["a b"]: must be a string (quote 1 to make it one)`}},
		{"struct", `inner = 1`, []string{"inner: must be a mapping, not a number"}},
		{"unknown", `nmae = "x"`, []string{`nmae: unknown field "nmae" (did you mean "name"?)`}},
		{"unknown in a table", "[inner]\nn = 1\ntgas = []", []string{`inner.tgas: unknown field "tgas" (did you mean "tags"?)`}},
		{"unknown in an array of tables", "[[items]]\nn = 1\n[[items]]\nn = 2\ntgas = []", []string{`items[1].tgas: unknown field "tgas" (did you mean "tags"?)`}},
		{"duplicate", "name = \"a\"\nname = \"b\"", []string{"name: duplicate key"}},
		{"duplicate table", "[inner]\nn = 1\n[inner]\nn = 2", []string{"inner: duplicate key"}},
		{"duplicate in a table", "[inner]\nn = 1\nn = 2", []string{"inner.n: duplicate key"}},
		{"duplicate by a dotted key", "inner.n = 1\n[inner]\nn = 2", []string{"inner: duplicate key"}},
		{"dotted key into an inline table", "inner = {n = 1}\ninner.tags = []", []string{"inner: duplicate key"}},
		{"header into an inline table", "inner = {n = 1}\n[inner.x]", []string{"inner: duplicate key"}},
		{"table after an array of tables", "[[items]]\nn = 1\n[items]", []string{"items: duplicate key"}},
		{"array of tables after a list", "items = []\n[[items]]\nn = 1", []string{"items: duplicate key"}},
		{"duplicate in free-form", "[config.a]\nb = 1\nb = 2", []string{"config.a.b: duplicate key"}},
		{"free-form not finite", `config = {a = [nan]}`, []string{"config.a[0]: must be a finite number"}},
		{"unit", `size = "64M"`, []string{"size: must be a size like 64Mi"}},
		{"unit as a list", `size = [1]`, []string{"size: must be a string or a number, not a list"}},
		{"bad date", `config = {d = 2024-02-30}`, []string{"config.d: 2024-02-30 is not a valid TOML date or time"}},
		{"every problem, in order", "name = 1\non = 2\nlist = [\"a\"]\nname = \"x\"\n", []string{"name: must be a string (quote 1 to make it one)", "on: must be true or false, not a number", "list[0]: must be an integer, not a string", "name: duplicate key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := docDecoder.Decode(TOML, []byte(tt.in), &d)
			var errs Errors[testDoc]
			if !errors.As(err, &errs) {
				t.Fatalf("Decode(%q) = %v, want an Errors", tt.in, err)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Decode(%q) =\n%s\nwant\n%s", tt.in, got, want)
			}
		})
	}
}

// TestTOMLValues: one document in YAML and in TOML decodes to the same
// value, TOML's ways of writing tables included.
func TestTOMLValues(t *testing.T) {
	y := `
name: x
on: true
count: 16
small: -128
ratio: 2
list: [1, 2]
map: {a: b}
inner: {n: 1}
items: [{n: 2, tags: [t]}, {n: 3}]
free: [1, 1.5, "s", {k: 1e3}]
config: {a: {b: [1, 2]}, b: 2024-01-02, c: "07:32:00", "d e": 1}
size: " 64Mi "
raw: 0x10
`
	tm := `
name = "x"
on = true
count = 0x10
small = -128
ratio = 2
list = [1, 2]
map = {a = "b"}
size = " 64Mi "
raw = 0x10
free = [1, 1.5, "s", {k = 1e3}]

[inner]
n = 1

[[items]]
n = 2
tags = ["t"]

[[items]]
n = 3

[config]
a.b = [1, 2]
b = 2024-01-02
c = 07:32:00
"d e" = 1
`
	var fromYAML, fromTOML doc
	if err := docDecoder.Decode(YAML, []byte(y), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if err := docDecoder.Decode(TOML, []byte(tm), &fromTOML); err != nil {
		t.Fatal(err)
	}
	fromYAML.Raw = "0x10" // YAML reads it as written, too
	if !reflect.DeepEqual(fromTOML, fromYAML) {
		t.Errorf("TOML decodes to\n%#v\nYAML to\n%#v", fromTOML, fromYAML)
	}
}

func TestTOMLReadErrors(t *testing.T) {
	dec := Decoder[testDoc]{MaxDepth: 3}
	tests := []struct{ name, in, want string }{
		{"syntax", "a = 1\nb = [1,\n", "doc: toml syntax: line 2, column 8: array is incomplete"},
		{"unquoted string", "timeout = 5s\n", "doc: toml syntax: line 1, column 12: strings must be quoted"},
		{"deep value", "a = [[[[1]]]]", "a[0][0][0]: must not nest deeper than 3 levels"},
		{"deep table", "[a.b.c.d]", "a.b.c.d: must not nest deeper than 3 levels"},
		{"deep array of tables", "[[a.b.c]]", "a.b.c: must not nest deeper than 3 levels"},
		{"empty", "# nothing\n\n", "doc: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dec.Read(TOML, []byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Read(%q) = %v, want %s", tt.in, err, tt.want)
			}
		})
	}
	if v, err := TOML.Read([]byte("# only a comment\n"), 1); err != nil || v != nil {
		t.Errorf("TOML.Read(a comment) = %+v, %v; want nil: an empty document", v, err)
	}
}

// TestTOMLDates: dates and times read as the strings written, when valid.
func TestTOMLDates(t *testing.T) {
	for _, in := range []string{"1979-05-27", "07:32:00", "07:32:00.999", "07:32", "1979-05-27T07:32:00", "1979-05-27 07:32:00", "1979-05-27t07:32:00z", "1979-05-27T00:32:00.999999-07:00", "1979-05-27T07:32Z"} {
		v, err := TOML.Read([]byte("d = "+in), 2)
		if err != nil || v.Pairs[0].Value.Kind != String || v.Pairs[0].Value.Text != in {
			t.Errorf("TOML.Read(d = %s) = %+v, %v; want the string written", in, v, err)
		}
	}
	for _, in := range []string{"1979-13-27", "25:00:00", "1979-05-27T07:32:00+25:00", "1979-02-30"} {
		v, err := TOML.Read([]byte("d = "+in), 2)
		if err == nil && v.Pairs[0].Value.Kind != Bad {
			t.Errorf("TOML.Read(d = %s) = %+v; want a Bad value", in, v.Pairs[0].Value)
		}
	}
}

// FuzzTOML checks the TOML reader against go-toml's own decoder: it never
// panics; a document go-toml accepts reads without a problem to the same
// values; and a document go-toml refuses is refused here too, as a syntax
// error or a problem at a path.
func FuzzTOML(f *testing.F) {
	for _, s := range []string{
		"name = \"x\"\n[a]\nb = 1\n[[c]]\nd = 2\n[[c]]\nd = 3\n",
		"a.b.c = 1\na.b.d = [1, 2.5, \"s\", true]\n[e]\nf = {g = 1, h.i = 2}\n",
		"[a.b]\nx = 1\n[a]\ny = 2\n",
		"[a]\nb.c = 1\n[a.b.d]\ne = 1\n",
		"x = 0x1F\ny = 0o17\nz = 0b101\nw = 1_000\nv = -3.5e-2\nu = +inf\n",
		"d = 1979-05-27T07:32:00Z\nt = 07:32:00\nl = 1979-05-27\n",
		"s = '''\nmulti\nline'''\nt = \"\"\"\nesc \\u00e9\"\"\"\n",
		"a = 1\na = 2\n",
		"[a]\n[a]\n",
		"a = {b = 1}\na.c = 2\n",
		"[[a]]\n[a]\n",
		"a = []\n[[a]]\n",
		"a.b = 1\n[a]\n",
		"[a.b.c]\n[a]\nb.d = 1\n",
		"\"quoted key\" = 1\n'lit.key' = 2\n",
		"a = [[1], [\"x\"], [{b = 1}]]\n",
		"x = 9223372036854775808\n",
		"x = 5s\n",
		"[a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		root, err := TOML.Read(data, 64)
		var ref map[string]any
		refErr := toml.Unmarshal(data, &ref)
		if refErr != nil {
			if err == nil && !hasProblem(root) {
				t.Fatalf("go-toml refuses %q (%v); read without a problem", data, refErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("go-toml accepts %q; Read = %v", data, err)
		}
		if root == nil {
			if len(ref) != 0 {
				t.Fatalf("Read(%q) = empty, go-toml has %v", data, ref)
			}
			return
		}
		if hasProblem(root) {
			t.Fatalf("go-toml accepts %q; the tree has a problem: %s", data, problems(root))
		}
		if !comparable(ref) {
			return
		}
		var got map[string]any
		if err := (Decoder[testDoc]{}).DecodeValue(root, &got); err != nil {
			t.Fatalf("DecodeValue(%q) = %v", data, err)
		}
		// Compared as JSON numbers read back as float64: an integral
		// float is an int64 here (canonicalNumber) and a float64 in
		// go-toml, which print differently past 2^53 but are one value.
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(ref)
		var gv, wv any
		json.Unmarshal(g, &gv)
		json.Unmarshal(w, &wv)
		if !reflect.DeepEqual(gv, wv) {
			t.Fatalf("Read(%q) =\n%s\ngo-toml:\n%s", data, g, w)
		}
	})
}

// hasProblem reports whether a tree holds a Bad value or a duplicate key.
func hasProblem(v *Value) bool { return problems(v) != "" }

func problems(v *Value) string {
	var out []string
	var walk func(v *Value, path string)
	walk = func(v *Value, path string) {
		switch v.Kind {
		case Bad:
			out = append(out, path+": "+v.Rule)
		case List:
			for i, it := range v.Items {
				walk(it, IndexPath(path, i))
			}
		case Map:
			for _, p := range v.Pairs {
				if r := pairRule(p); r != "" {
					out = append(out, KeyPath(path, p.Key)+": "+r)
					continue
				}
				walk(p.Value, KeyPath(path, p.Key))
			}
		}
	}
	walk(v, "")
	return strings.Join(out, "; ")
}

// comparable reports whether go-toml's value of a document has nothing a
// tree holds otherwise: dates and times (strings here), and numbers that
// are not finite.
func comparable(x any) bool {
	switch x := x.(type) {
	case map[string]any:
		for _, v := range x {
			if !comparable(v) {
				return false
			}
		}
	case []any:
		for _, v := range x {
			if !comparable(v) {
				return false
			}
		}
	case float64:
		return !math.IsInf(x, 0) && !math.IsNaN(x)
	case time.Time, toml.LocalDate, toml.LocalTime, toml.LocalDateTime:
		return false
	}
	return true
}
