package policy

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
)

var snapshot = flag.Bool("snapshot", false, "rewrite testdata/decoded.snapshot (only for a deliberate change of what valid policies decode to)")

// TestDecodeSnapshot decodes every valid policy the repository holds (the
// example, the policies of the admission cases and the empty ones), in
// YAML and in JSON, with Parse and with the yaml and json packages
// (UnmarshalYAML, UnmarshalJSON), and compares what each decodes to,
// exactly, with testdata/decoded.snapshot. The snapshot was written by the
// decoder that came before package strictdoc's generic one: a change of
// decoder must not change what a valid policy decodes to. -update leaves
// it alone; -snapshot rewrites it.
func TestDecodeSnapshot(t *testing.T) {
	corpus := validCorpus(t)
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(corpus)) {
		data := corpus[name]
		p, err := Parse(data)
		if err != nil {
			t.Errorf("Parse(%s) = %v, want no error", name, err)
			continue
		}
		fmt.Fprintf(&b, "%s\n\t%#v\n", name, p)
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		p = DefaultPolicy()
		if strings.HasSuffix(name, " as JSON") {
			err = json.Unmarshal(data, &p)
		} else {
			err = yaml.Unmarshal(data, &p)
		}
		if err != nil {
			t.Errorf("Unmarshal(%s) = %v, want no error", name, err)
			continue
		}
		fmt.Fprintf(&b, "%s unmarshaled\n\t%#v\n", name, p)
	}
	golden.Check(t, filepath.Join("testdata", "decoded.snapshot"), []byte(b.String()), *snapshot, "go test ./policy -snapshot")
}

// validCorpus returns every valid policy the repository holds, by a name
// saying where it comes from.
func validCorpus(t *testing.T) map[string][]byte {
	t.Helper()
	docs := map[string][]byte{
		"empty":        nil,
		"comment only": []byte("# only a comment\n"),
		"empty flow":   []byte("{}\n"),
	}
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs["testdata/example.yaml"] = example
	cases, err := filepath.Glob("testdata/admit/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range cases {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Policy yaml.Node `yaml:"policy"`
		}
		if err := yaml.Unmarshal(expandKeys(raw), &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Policy.Kind != 0 {
			docs[name+" policy"] = nodeBytes(t, &c.Policy)
		}
	}
	// The same policies written in JSON, as a tool converting them would.
	yamlDocs := map[string][]byte{}
	for name, data := range docs {
		yamlDocs[name] = data
	}
	for name, data := range yamlDocs {
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v == nil {
			continue
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s as JSON: %v", name, err)
		}
		docs[name+" as JSON"] = j
	}
	return docs
}
