package node_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/internal/golden"
	"github.com/andromeda-runner/andromeda/node"
)

var configSnapshot = flag.Bool("snapshot", false, "rewrite testdata/config/decoded.snapshot (only for a deliberate change of what valid configs decode to)")

// TestConfigSnapshot parses every valid config the repository holds (the
// README's, those in testdata/config, in YAML and in JSON, and an empty
// one) and compares what each decodes to, exactly, with
// testdata/config/decoded.snapshot. The snapshot was written by the decoder
// that came before package strictdoc's generic one: a change of decoder
// must not change what a valid config decodes to. A field added to Config
// changes it too: rewrite it with -snapshot and check that the diff only
// adds the field.
func TestConfigSnapshot(t *testing.T) {
	corpus := map[string]struct {
		data   []byte
		isJSON bool
	}{"empty": {}}
	files, err := filepath.Glob("testdata/config/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		corpus[name] = struct {
			data   []byte
			isJSON bool
		}{data, false}
		if strings.HasSuffix(name, "numbers.yaml") {
			continue // JSON has always refused numbers for these strings
		}
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		corpus[name+" as JSON"] = struct {
			data   []byte
			isJSON bool
		}{j, true}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(readme, []byte("```yaml\nlisten: 127.0.0.1:7070"))
	if i < 0 {
		t.Fatal("README has no config block starting with listen:")
	}
	block := string(readme[i+len("```yaml\n"):])
	block = block[:strings.Index(block, "```")]
	block = strings.Replace(block, "data: ~/.local/share/andromeda", "data: /tmp/x", 1)
	block = strings.Replace(block, "name: <host name>", "name: host", 1)
	corpus["README.md"] = struct {
		data   []byte
		isJSON bool
	}{[]byte(block), false}

	def := node.DefaultConfig()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(corpus)) {
		doc := corpus[name]
		cfg, err := node.ParseConfig(doc.data, doc.isJSON)
		if err != nil {
			t.Errorf("ParseConfig(%s) = %v, want no error", name, err)
			continue
		}
		// The defaults that depend on the machine.
		if cfg.Name == def.Name {
			cfg.Name = "<host name>"
		}
		if cfg.Data == def.Data {
			cfg.Data = "<data dir>"
		}
		fmt.Fprintf(&b, "%s\n\t%#v\n", name, cfg)
	}
	golden.Check(t, filepath.Join("testdata", "config", "decoded.snapshot"), []byte(b.String()), *configSnapshot, "go test ./node -run TestConfigSnapshot -snapshot")
}
