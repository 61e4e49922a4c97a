package manifest

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/internal/golden"
)

var snapshot = flag.Bool("snapshot", false, "rewrite testdata/decoded.snapshot (only for a deliberate change of what valid manifests decode to)")

// TestDecodeSnapshot parses every valid manifest the repository holds (the
// valid test manifests, the examples, the design document's example and
// the manifests of the policy's admission cases) and compares what each
// decodes to, exactly, with testdata/decoded.snapshot. The snapshot was
// written by the decoder that came before package strictdoc's generic one:
// a change of decoder must not change what a valid manifest decodes to.
// -update leaves it alone; -snapshot rewrites it.
func TestDecodeSnapshot(t *testing.T) {
	corpus := validCorpus(t)
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(corpus)) {
		doc := corpus[name]
		s, err := Parse(doc.data, doc.format)
		if err != nil {
			t.Errorf("Parse(%s) = %v, want no error", name, err)
			continue
		}
		fmt.Fprintf(&b, "%s\n\t", name)
		dump(&b, reflect.ValueOf(*s))
		b.WriteString("\n")
	}
	golden.Check(t, filepath.Join("testdata", "decoded.snapshot"), []byte(b.String()), *snapshot, "go test ./manifest -snapshot")
}

type corpusDoc struct {
	data   []byte
	format Format
}

// validCorpus returns every valid manifest the repository holds, by a name
// saying where it comes from.
func validCorpus(t *testing.T) map[string]corpusDoc {
	t.Helper()
	docs := map[string]corpusDoc{}
	for name, data := range manifests(t, "valid") {
		f, _ := FormatOf(name)
		docs["testdata/valid/"+name] = corpusDoc{data, f}
	}
	examples, err := filepath.Glob("../examples/*/andromeda.*")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range examples {
		f, ok := FormatOf(name)
		if !ok {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		docs[strings.TrimPrefix(filepath.ToSlash(name), "../")] = corpusDoc{data, f}
	}
	if len(examples) == 0 {
		t.Fatal("no manifests under ../examples")
	}
	design, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "```yaml\nname: price-watch"
	i := bytes.Index(design, []byte(start))
	if i < 0 {
		t.Fatal("docs/design.md has no manifest example")
	}
	block := design[i+len("```yaml\n"):]
	block = block[:bytes.Index(block, []byte("```"))]
	docs["docs/design.md"] = corpusDoc{block, YAML}

	cases, err := filepath.Glob("../policy/testdata/admit/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range cases {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Manifest yaml.Node `yaml:"manifest"`
			Previous yaml.Node `yaml:"previous"`
		}
		if err := yaml.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for part, n := range map[string]*yaml.Node{"manifest": &c.Manifest, "previous": &c.Previous} {
			if n.Kind == 0 {
				continue
			}
			data, err := yaml.Marshal(n)
			if err != nil {
				t.Fatal(err)
			}
			docs[strings.TrimPrefix(filepath.ToSlash(name), "../")+" "+part] = corpusDoc{data, YAML}
		}
	}
	// The same manifests written in JSON, as a tool converting them would.
	yamlDocs := map[string]corpusDoc{}
	for name, doc := range docs {
		if doc.format == YAML {
			yamlDocs[name] = doc
		}
	}
	for name, doc := range yamlDocs {
		var v any
		if err := yaml.Unmarshal(doc.data, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s as JSON: %v", name, err)
		}
		docs[name+" as JSON"] = corpusDoc{data, JSON}
	}
	return docs
}

// dump writes v exactly: every field, unexported ones included, and the
// dynamic type of every interface value, which %#v leaves out (int64(1)
// and float64(1) both print as 1).
func dump(b *strings.Builder, v reflect.Value) {
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		b.WriteString(v.Elem().Type().String() + "(")
		dump(b, v.Elem())
		b.WriteString(")")
	case reflect.Pointer:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		b.WriteString("&")
		dump(b, v.Elem())
	case reflect.Struct:
		b.WriteString(v.Type().String() + "{")
		for i := range v.NumField() {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(v.Type().Field(i).Name + ": ")
			dump(b, v.Field(i))
		}
		b.WriteString("}")
	case reflect.Slice:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		b.WriteString("[")
		for i := range v.Len() {
			if i > 0 {
				b.WriteString(", ")
			}
			dump(b, v.Index(i))
		}
		b.WriteString("]")
	case reflect.Map:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		b.WriteString("{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(k.String()) + ": ")
			dump(b, v.MapIndex(k))
		}
		b.WriteString("}")
	case reflect.String:
		b.WriteString(strconv.Quote(v.String()))
	case reflect.Bool:
		b.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		b.WriteString(strconv.FormatFloat(v.Float(), 'g', -1, 64))
	default:
		panic("dump: cannot write a " + v.Type().String())
	}
}
