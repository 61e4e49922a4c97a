package node_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// TestConfigFormats: every config in testdata/config, written in YAML,
// JSON and TOML, loads to the same Config, each format chosen by the file's
// extension.
func TestConfigFormats(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/config/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs: %v", err)
	}
	dir := t.TempDir()
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		want, err := node.ParseConfigFormat(data, strictdoc.YAML)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		base := strings.TrimSuffix(filepath.Base(name), ".yaml")
		written := map[string][]byte{}
		if written[".toml"], err = toml.Marshal(v); err != nil {
			t.Fatal(err)
		}
		if base != "numbers" { // JSON has always refused numbers for these strings
			if written[".json"], err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		for ext, doc := range written {
			file := filepath.Join(dir, base+ext)
			if err := os.WriteFile(file, doc, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := node.LoadConfig(file)
			if err != nil {
				t.Errorf("LoadConfig(%s) = %v\n%s", base+ext, err, doc)
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s decodes to\n%#v\nthe YAML to\n%#v", base+ext, got, want)
			}
		}
	}
}

// TestConfigTOMLErrors: a TOML config's problems name their paths, with
// the words YAML's get.
func TestConfigTOMLErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"unknown key", "[runs]\nper_servce = 10\n", `runs.per_servce: unknown field "per_servce" (did you mean "per_service"?)`},
		{"wrong type", "[runs]\nper_service = \"10\"\n", "runs.per_service: must be an integer, not a string"},
		{"duplicate key", "listen = \"127.0.0.1:7070\"\nlisten = \"127.0.0.1:7071\"\n", "listen: duplicate key"},
		{"duplicate table", "[runs]\nper_service = 10\n[runs]\n", "runs: duplicate key"},
		{"bad duration", "[policy.limits.timeout]\nmax = \"5x\"\n", "policy.limits.timeout.max: must be a duration like 500ms, 30s or 1h30m"},
		{"unquoted duration", "[policy.limits.timeout]\nmax = 5s\n", "config: toml syntax: line 2, column 8: strings must be quoted"},
	}
	for _, tt := range tests {
		_, err := node.ParseConfigFormat([]byte(tt.in), strictdoc.TOML)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: ParseConfigFormat(%q) = %v, want %s", tt.name, tt.in, err, tt.want)
		}
	}
}
