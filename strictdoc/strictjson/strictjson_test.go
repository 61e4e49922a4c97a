package strictjson_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/strictdoc"
	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
)

type inner struct {
	Kind  string   `json:"kind"`
	Small int8     `json:"small"`
	Count uint8    `json:"count"`
	Ratio float32  `json:"ratio"`
	On    bool     `json:"on"`
	Tags  []string `json:"tags"`
}

type doc struct {
	Name  string           `json:"name"`
	Items []inner          `json:"items"`
	Map   map[string]inner `json:"map"`
	Inner inner            `json:"inner"`
}

// raw has the fields strictdoc's tree cannot carry: a message kept as
// written, and a type with its own UnmarshalJSON.
type raw struct {
	Message json.RawMessage `json:"message"`
	At      time.Time       `json:"at"`
}

func TestUnmarshal(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "must not be empty"},
		{"white space", " \n\t", "must not be empty"},
		{"trailing", "{\"name\": \"a\"}\n  x", "json syntax: line 2, column 3: trailing data after the document"},
		{"second value", `{}{}`, "json syntax: line 1, column 3: trailing data after the document"},
		{"closing bracket after", `{}}`, "json syntax: line 1, column 3: trailing data after the document"},
		{"truncated", `{"name": "a"`, "json syntax: line 1, column 13: unexpected end of input"},
		{"bad token", "{\n  \"name\": x}", "json syntax: line 2, column 11: invalid character 'x' looking for beginning of value"},
		{"unknown", `{"name": "a", "nope": 1}`, `nope: unknown field "nope"`},
		{"unknown nested", `{"items": [{"kind": "a"}, {"kind": "b", "nope": 1}]}`, `items[1].nope: unknown field "nope"`},
		{"unknown in a map value", `{"map": {"a b": {"nope": {}}}}`, `map["a b"].nope: unknown field "nope"`},
		{"unknown here, known elsewhere", `{"inner": {"kind": "a"}, "kind": "b"}`, `kind: unknown field "kind"`},
		{"unknown after a null", `{"inner": null, "items": [null, {"nope": 1}]}`, `items[1].nope: unknown field "nope"`},
		{"root", `[1]`, "must be a mapping, not a list"},
		{"string", `{"name": ["a"]}`, "name: must be a string, not a list"},
		{"number for a string", `{"name": 1.20}`, "name: must be a string (quote 1.20 to make it one)"},
		{"boolean for a string", `{"name": true}`, "name: must be a string (quote true to make it one)"},
		{"boolean", `{"inner": {"on": "yes"}}`, "inner.on: must be true or false, not a string"},
		{"integer", `{"inner": {"small": "3"}}`, "inner.small: must be an integer, not a string"},
		{"fraction", `{"inner": {"small": 1.5}}`, "inner.small: must be an integer, not 1.5"},
		{"overflow", `{"inner": {"small": 300}}`, "inner.small: must be an integer from -128 to 127"},
		{"negative unsigned", `{"inner": {"count": -1}}`, "inner.count: must be an integer from 0 to 255"},
		{"number", `{"inner": {"ratio": "half"}}`, "inner.ratio: must be a number, not a string"},
		{"not finite", `{"inner": {"ratio": 1e99}}`, "inner.ratio: must be a finite number"},
		{"list", `{"items": {}}`, "items: must be a list, not a mapping"},
		{"list item", `{"items": [{}, {"kind": 1}]}`, "items[1].kind: must be a string (quote 1 to make it one)"},
		{"nested list item", `{"items": [{"tags": ["a", 2]}]}`, "items[0].tags[1]: must be a string (quote 2 to make it one)"},
		{"map", `{"map": ["a"]}`, "map: must be a mapping, not a list"},
		{"map value", `{"map": {"a b": {"on": 1}}}`, `map["a b"].on: must be true or false, not a number`},
		{"struct", `{"inner": 1}`, "inner: must be a mapping, not a number"},
		{"first problem", `{"name": 1, "inner": {"on": 2}}`, "name: must be a string (quote 1 to make it one)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := strictjson.Unmarshal([]byte(tt.in), &d)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Unmarshal(%q) = %v, want %s", tt.in, err, tt.want)
			}
		})
	}
}

type testDoc struct{}

func (testDoc) Name() string { return "doc" }

// TestSameWordsAsStrictdoc: where strictjson and strictdoc both refuse a
// JSON document, they say the same.
func TestSameWordsAsStrictdoc(t *testing.T) {
	dec := strictdoc.Decoder[testDoc]{MaxDepth: 32}
	for _, in := range []string{
		"", " \n", "{\"name\": \"a\"}\n  x", `{}{}`, `{"name": "a"`, "{\n  \"name\": x}", `[1]`, `{"nope": 1}`,
		`{"name": ["a"]}`, `{"name": 1.20}`, `{"name": false}`, `{"inner": {"on": "yes"}}`, `{"inner": {"small": "3"}}`,
		`{"inner": {"small": 1.5}}`, `{"inner": {"small": 300}}`, `{"inner": {"ratio": "half"}}`, `{"inner": {"ratio": 1e99}}`,
		`{"items": {}}`, `{"items": [{}, {"kind": 1}]}`, `{"map": ["a"]}`, `{"map": {"a b": {"on": 1}}}`, `{"inner": 1}`,
	} {
		var a, b doc
		got := strictjson.Unmarshal([]byte(in), &a)
		want := dec.Decode(strictdoc.JSON, []byte(in), &b)
		if got == nil || want == nil {
			t.Errorf("%q: strictjson %v, strictdoc %v; want both to refuse it", in, got, want)
			continue
		}
		if w := strings.TrimPrefix(want.Error(), "doc: "); got.Error() != w {
			t.Errorf("%q: strictjson says %q, strictdoc %q", in, got, w)
		}
	}
}

func TestUnmarshalKeepsWhatEncodingJSONDoes(t *testing.T) {
	in := " {\"message\": {\"b\":1,  \"a\":[1.50, \"\\u00e9\"]}, \"at\": \"2026-12-01T10:00:00Z\"}\n"
	var r raw
	if err := strictjson.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if got, want := string(r.Message), `{"b":1,  "a":[1.50, "\u00e9"]}`; got != want {
		t.Errorf("message = %s, want %s: byte for byte", got, want)
	}
	if !r.At.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("at = %v", r.At)
	}
	err := strictjson.Unmarshal([]byte(`{"at": "yesterday"}`), &r)
	if err == nil || !strings.HasPrefix(err.Error(), `parsing time "yesterday"`) {
		t.Errorf("Unmarshal(bad time) = %v, want the time package's error without \"json: \"", err)
	}
	err = strictjson.Unmarshal([]byte(`{"message": {"nope": 1}, "at": "2026-12-01T10:00:00Z", "nope": 2}`), &r)
	if err == nil || err.Error() != `nope: unknown field "nope"` {
		t.Errorf("Unmarshal(unknown after a message) = %v, want the unknown field outside the message", err)
	}
	var d doc
	if err := strictjson.Unmarshal([]byte(`{"NAME": "a", "Inner": {"Kind": "b"}}`), &d); err != nil || d.Name != "a" || d.Inner.Kind != "b" {
		t.Errorf("Unmarshal(names in another case) = %+v, %v; want them matched as encoding/json does", d, err)
	}
	var e *strictjson.Error
	if err := strictjson.Unmarshal([]byte(`{"items": [{"kind": 1}]}`), &d); !errors.As(err, &e) || e.Path != "items[0].kind" || e.Rule != "must be a string (quote 1 to make it one)" {
		t.Errorf("Unmarshal(wrong type) = %#v, want an *Error with its path and rule apart", err)
	}
	var list []json.RawMessage
	if err := strictjson.Unmarshal([]byte(`[{"x": 1}, null]`), &list); err != nil || len(list) != 2 {
		t.Errorf("Unmarshal(list) = %v, %v", list, err)
	}
}

// FuzzUnmarshal: whatever the input, Unmarshal does not panic, and what it
// accepts json.Unmarshal accepts too.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, `{"items":[{"kind":1}]}`, `{"map":{"a b":{"nope":1}}}`, `{"inner":{"small":300}}`, `{}}`, `[`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d doc
		if err := strictjson.Unmarshal(b, &d); err != nil {
			return
		}
		if err := json.Unmarshal(b, new(doc)); err != nil {
			t.Fatalf("Unmarshal(%q) accepted what json.Unmarshal refuses: %v", b, err)
		}
	})
}
