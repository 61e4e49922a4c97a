package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// TestFormats: the example policy, written in YAML, JSON and TOML, loads
// to the same Policy, each format chosen by the file's extension.
func TestFormats(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseFormat(data, strictdoc.YAML)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	written := map[string][]byte{".yml": data}
	if written[".json"], err = json.Marshal(v); err != nil {
		t.Fatal(err)
	}
	if written[".toml"], err = toml.Marshal(v); err != nil {
		t.Fatal(err)
	}
	for ext, doc := range written {
		file := filepath.Join(dir, "policy"+ext)
		if err := os.WriteFile(file, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Load(file)
		if err != nil {
			t.Errorf("Load(policy%s) = %v\n%s", ext, err, doc)
			continue
		}
		if got.Digest() != want.Digest() || !reflect.DeepEqual(got, want) {
			t.Errorf("policy%s decodes to\n%#v\nthe YAML to\n%#v", ext, got, want)
		}
	}
}

// TestTOMLErrors: a TOML policy's problems name their paths.
func TestTOMLErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"unknown key", "[limits.memory]\nmaks = \"1Gi\"\n", `limits.memory.maks: unknown field "maks"`},
		{"wrong type", "[[trusted_hubs]]\nname = \"a\"\nweight = \"2\"\n", "trusted_hubs[0].weight: must be a number, not a string"},
		{"duplicate key", "[[origins]]\nkind = \"hostchain\"\n[[origins]]\nkind = \"hostchain\"\nkind = \"symbiote\"\n", "origins[1].kind: duplicate key"},
		{"bad size", "max_payload = \"16MB\"\n", "max_payload: must be a size like 64Mi, 1Gi, 512k or a number of bytes"},
	}
	for _, tt := range tests {
		_, err := ParseFormat([]byte(tt.in), strictdoc.TOML)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: ParseFormat(%q) = %v, want %s", tt.name, tt.in, err, tt.want)
		}
	}
}
