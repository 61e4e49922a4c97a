package andromeda_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/manifest"
)

// designDoc is the project's own design document; code and docs cite its
// numbered sections as "docs/design.md section N".
const designDoc = "docs/design.md"

// outsideRefs are references the repository must not carry: the planning
// document kept outside the repository, and paths into directories beside
// it. Spelled in pieces so this file does not match itself.
var outsideRefs = []string{
	"DESIGN" + ".md",
	"../" + "shared",
	"/work/" + "shared",
}

// docFiles lists the tracked .go and .md files, or, outside a git work
// tree, every such file under the module root.
func docFiles(t *testing.T) []string {
	t.Helper()
	keep := func(p string) bool { return strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".md") }
	var files []string
	if out, err := exec.Command("git", "ls-files", "-z", "--", "*.go", "*.md").Output(); err == nil && len(out) > 0 {
		for _, p := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
			if keep(p) {
				files = append(files, filepath.FromSlash(p))
			}
		}
		return files
	}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && keep(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestDocLinks keeps the repository standing alone: no file points at the
// planning document outside it, and every "docs/design.md section N" names
// a section the design document has.
func TestDocLinks(t *testing.T) {
	design, err := os.ReadFile(designDoc)
	if err != nil {
		t.Fatalf("%s: %v", designDoc, err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\d+)\. `).FindAllSubmatch(design, -1) {
		sections[string(m[1])] = true
	}
	if len(sections) == 0 {
		t.Fatalf("%s has no numbered sections (## N. Title)", designDoc)
	}
	cite := regexp.MustCompile(`docs/design\.md\s+sections?\s+(\d+)((?:(?:,\s*|\s+and\s+)\d+)*)`)
	more := regexp.MustCompile(`\d+`)
	files := docFiles(t)
	if len(files) == 0 {
		t.Fatal("no .go or .md files found")
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the work tree, not yet in the index
			}
			t.Fatal(err)
		}
		for i, line := range bytes.Split(data, []byte("\n")) {
			for _, ref := range outsideRefs {
				if bytes.Contains(line, []byte(ref)) {
					t.Errorf("%s:%d mentions %q, which is outside the repository; cite %s instead", p, i+1, ref, designDoc)
				}
			}
		}
		// Citations may wrap across comment lines: match on the text with
		// line breaks and comment markers folded into spaces.
		flat := regexp.MustCompile(`\s*\n\s*(?://)?\s*`).ReplaceAll(data, []byte(" "))
		for _, m := range cite.FindAllSubmatch(flat, -1) {
			nums := append([][]byte{m[1]}, more.FindAll(m[2], -1)...)
			for _, n := range nums {
				if !sections[string(n)] {
					t.Errorf("%s cites %s section %s, which does not exist", p, designDoc, n)
				}
			}
		}
	}
}

// TestDocLinksDesignExample keeps the manifest example of the design
// document (section 3) valid and complete: it must pass manifest.Check and
// set every top-level field of manifest.Service.
func TestDocLinksDesignExample(t *testing.T) {
	design, err := os.ReadFile(designDoc)
	if err != nil {
		t.Fatalf("%s: %v", designDoc, err)
	}
	_, sec3, ok := bytes.Cut(design, []byte("\n## 3. "))
	if !ok {
		t.Fatalf("%s has no section 3", designDoc)
	}
	_, block, ok := bytes.Cut(sec3, []byte("```yaml\n"))
	if !ok {
		t.Fatalf("%s section 3 has no ```yaml example", designDoc)
	}
	block, _, ok = bytes.Cut(block, []byte("```"))
	if !ok {
		t.Fatalf("%s section 3: the yaml example is not closed", designDoc)
	}
	if _, err := manifest.Check(block, manifest.YAML); err != nil {
		t.Fatalf("%s section 3: the example is not a valid manifest:\n%v", designDoc, err)
	}
	var keys map[string]any
	if err := yaml.Unmarshal(block, &keys); err != nil {
		t.Fatal(err)
	}
	st := reflect.TypeOf(manifest.Service{})
	for i := range st.NumField() {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("yaml"), ",")
		if _, ok := keys[name]; !ok {
			t.Errorf("%s section 3: the example does not set %s", designDoc, name)
		}
	}
}
