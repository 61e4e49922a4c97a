package manifest

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"
)

// TestFormats: every YAML manifest of the valid corpus, written in JSON
// and in TOML by a tool converting it, parses to the same Service in both;
// and the hand-written TOML of the design example parses to the same
// Service as its YAML. (A converting tool makes a YAML date a time and .5
// a 0.5, so the converted documents are compared with each other.)
func TestFormats(t *testing.T) {
	t.Parallel()
	n := 0
	for name, doc := range validCorpus(t) {
		if doc.format != YAML {
			continue
		}
		var v map[string]any
		if err := yaml.Unmarshal(doc.data, &v); err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Parse(j, JSON)
		if err != nil {
			t.Fatalf("%s in JSON: %v", name, err)
		}
		tm, err := toml.Marshal(v)
		if err != nil {
			t.Fatalf("%s: toml.Marshal: %v", name, err)
		}
		got, err := Parse(tm, TOML)
		if err != nil {
			t.Errorf("%s in TOML: %v\n%s", name, err, tm)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s in TOML decodes to\n%#v\nin JSON to\n%#v", name, got, want)
		}
		n++
	}
	if n < 10 {
		t.Errorf("compared %d manifests, want the whole corpus", n)
	}

	y, err := os.ReadFile("testdata/valid/design-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tm, err := os.ReadFile("testdata/valid/design-toml.toml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Check(y, YAML)
	if err != nil {
		t.Fatal(err)
	}
	got, err := CheckFile("andromeda.toml", tm)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("design-toml.toml decodes to\n%#v\ndesign-example.yaml to\n%#v", got, want)
	}
}
