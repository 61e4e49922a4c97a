package andromeda_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda"
)

// packages maps each package dir (relative, slash-separated) to its non-test
// imports and whether it has a package comment.
type pkgInfo struct {
	imports map[string]bool
	doc     bool
}

func scan(t *testing.T) map[string]*pkgInfo {
	t.Helper()
	pkgs := map[string]*pkgInfo{}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "." || d.Name() == "testdata" || p == "bench") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(p))
		info := pkgs[dir]
		if info == nil {
			info = &pkgInfo{imports: map[string]bool{}}
			pkgs[dir] = info
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			info.doc = true
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			info.imports[path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// TestPackageDocs fails for a package without a package comment saying what
// it holds.
func TestPackageDocs(t *testing.T) {
	for dir, info := range scan(t) {
		if !info.doc {
			t.Errorf("package %s has no package comment", dir)
		}
	}
}

// TestImportRules keeps the leaves leaves: drivers never see the manifest,
// and what guests compile against is standard library only.
func TestImportRules(t *testing.T) {
	pkgs := scan(t)
	mod := andromeda.Module + "/"
	internal := func(p string) bool { return strings.HasPrefix(p, mod) }
	std := func(p string) bool { return !strings.Contains(strings.Split(p, "/")[0], ".") }
	rules := []struct {
		dir     string
		allowed func(string) bool
		why     string
	}{
		{"contract", std, "guests compile against it"},
		{"sdk/go", func(p string) bool { return std(p) || p == mod+"contract" }, "guests compile against it"},
		{"manifest", func(p string) bool { return std(p) || p == "go.yaml.in/yaml/v3" || p == mod+"strictdoc" }, "a leaf: parse and validate only"},
		{"strictdoc", func(p string) bool { return std(p) || p == "go.yaml.in/yaml/v3" }, "a leaf: reads documents, shared by manifest and policy"},
		{"archive", std, "a leaf"},
		{"metrics", func(p string) bool { return std(p) || strings.HasPrefix(p, "github.com/prometheus/") }, "a leaf: the node's registry on client_golang"},
	}
	for _, r := range rules {
		info, ok := pkgs[r.dir]
		if !ok {
			t.Errorf("package %s not found", r.dir)
			continue
		}
		for imp := range info.imports {
			if !r.allowed(imp) {
				t.Errorf("%s imports %s; it must not (%s)", r.dir, imp, r.why)
			}
		}
	}
	// The jail is a mechanism drivers use, never the other way round, and
	// knows nothing of the node.
	if info, ok := pkgs["sandbox/jail"]; !ok {
		t.Errorf("package sandbox/jail not found")
	} else {
		for imp := range info.imports {
			for _, no := range []string{"sandbox/process", "sandbox/wasm", "node", "server", "store"} {
				if imp == mod+no || strings.HasPrefix(imp, mod+no+"/") {
					t.Errorf("sandbox/jail imports %s; it must not (a jail knows no driver and nothing of the node)", imp)
				}
			}
		}
	}
	for dir, info := range pkgs {
		if strings.HasPrefix(dir, "sandbox") && info.imports[mod+"manifest"] {
			t.Errorf("%s imports manifest: drivers get a sandbox.Spec from the node instead", dir)
		}
		for imp := range info.imports {
			if internal(imp) && imp == mod+"node" && dir != "cmd/andromeda" {
				t.Errorf("%s imports node: only the binary composes the node", dir)
			}
		}
	}
}
