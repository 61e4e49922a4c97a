package andromeda_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
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
	for _, p := range sourceFiles(t) {
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
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
	}
	return pkgs
}

// sourceFiles lists the module's non-test Go files, slash-separated
// relative paths, leaving out testdata, hidden directories, bench (a
// module of its own) and third_party (other projects' modules, copied and
// patched). Files for every GOOS and GOARCH are included, so the rules
// hold on every platform.
func sourceFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "." || d.Name() == "testdata" || p == "bench" || p == "third_party") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			files = append(files, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// std reports whether an import path is the standard library's: its first
// element has no dot.
func std(path string) bool { return !strings.Contains(strings.Split(path, "/")[0], ".") }

// reach returns every package of this module that dir imports, directly or
// not, each with the import chain that reaches it first ("sandbox/jail",
// "archive", "sandbox/process"), by a breadth-first walk of pkgs.
func reach(pkgs map[string]*pkgInfo, dir string) map[string][]string {
	mod := andromeda.Module + "/"
	chains := map[string][]string{dir: {dir}}
	queue := []string{dir}
	for len(queue) > 0 {
		from := queue[0]
		queue = queue[1:]
		info := pkgs[from]
		if info == nil {
			continue
		}
		for _, imp := range slices.Sorted(maps.Keys(info.imports)) {
			to, ok := strings.CutPrefix(imp, mod)
			if !ok || chains[to] != nil {
				continue
			}
			chains[to] = append(slices.Clone(chains[from]), to)
			queue = append(queue, to)
		}
	}
	return chains
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
	rules := []struct {
		dir     string
		allowed func(string) bool
		why     string
	}{
		{"contract", func(p string) bool { return std(p) || p == mod+"strictdoc/strictjson" }, "guests compile against it"},
		{"sdk/go", func(p string) bool { return std(p) || p == mod+"contract" }, "guests compile against it"},
		{"action", func(p string) bool { return std(p) || p == mod+"contract" }, "a leaf: what a run's actions are judged against, beside the executors"},
		{"manifest", func(p string) bool {
			return std(p) || p == "go.yaml.in/yaml/v3" || p == mod+"strictdoc" || p == mod+"contract"
		}, "a leaf: parse and validate only (contract: the one topic rule)"},
		{"strictdoc", func(p string) bool {
			return std(p) || p == "go.yaml.in/yaml/v3" || p == "github.com/pelletier/go-toml/v2/unstable" || p == mod+"strictdoc/strictjson"
		}, "a leaf: reads documents, shared by manifest and policy"},
		{"strictdoc/strictjson", std, "strictdoc's JSON half, for the leaves that must not import YAML"},
		{"archive", std, "a leaf"},
		{"envelope", std, "a leaf: canonical JSON, sealing and verifying a run's submit envelope"},
		{"keys", func(p string) bool { return std(p) || p == mod+"envelope" }, "a leaf: the node's signing keys, one file per target (envelope: KeyID)"},
		{"usage", func(p string) bool { return std(p) || p == mod+"envelope" }, "a leaf: signed usage records a requestor verifies (envelope: canonical JSON)"},
		{"health", std, "a leaf: failure counting and backoff"},
		{"executor", std, "a leaf: the guarded HTTP client, retry rules and idempotency keys of executions"},
		{"pgbridge", func(p string) bool { return std(p) || strings.HasPrefix(p, "github.com/jackc/") }, "a leaf: PostgreSQL notifications to a publish function, nothing of the node"},
		{"metrics", func(p string) bool { return std(p) || strings.HasPrefix(p, "github.com/prometheus/") }, "a leaf: the node's registry on client_golang"},
		{"store", func(p string) bool { return p != mod+"api" && p != mod+"server" && p != mod+"node" }, "the store keeps its own records, not the API's wire types"},
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

// TestJailImportsNoDriver: the jail is a mechanism drivers use, never the
// other way round, and knows nothing of the node. No package it imports,
// directly or not, is a driver (any package under sandbox/ but the jail's
// own, so a new driver is covered the day it lands), the node, the server
// or the store.
func TestJailImportsNoDriver(t *testing.T) {
	pkgs := scan(t)
	if pkgs["sandbox/jail"] == nil {
		t.Fatal("package sandbox/jail not found")
	}
	chains := reach(pkgs, "sandbox/jail")
	for _, dir := range slices.Sorted(maps.Keys(chains)) {
		chain := chains[dir]
		rest, underSandbox := strings.CutPrefix(dir, "sandbox/")
		driver := underSandbox && rest != "jail" && !strings.HasPrefix(rest, "jail/")
		node := slices.ContainsFunc([]string{"node", "server", "store"}, func(no string) bool {
			return dir == no || strings.HasPrefix(dir, no+"/")
		})
		if driver || node {
			t.Errorf("%s: the jail must import no driver and nothing of the node", strings.Join(chain, " → "))
		}
	}
}

// apiLeaves are the packages besides the standard library that api may
// import: each imports only the standard library and other leaves.
var apiLeaves = []string{"attest", "contract", "decision", "strictdoc/strictjson"}

// TestAPIIsLight: a program that only talks to a node imports api, and gets
// the standard library and the leaves with it, not the policy engine
// (cel-go, antlr, protobuf) or the store. Each leaf imports only the
// standard library and other leaves (attest and contract read JSON with
// strictdoc/strictjson), whether api imports it today or not.
func TestAPIIsLight(t *testing.T) {
	pkgs := scan(t)
	mod := andromeda.Module + "/"
	check := func(chain []string, allowed func(dir string) bool) {
		info := pkgs[chain[len(chain)-1]]
		if info == nil {
			t.Errorf("package %s not found", strings.Join(chain, " → "))
			return
		}
		for _, imp := range slices.Sorted(maps.Keys(info.imports)) {
			dir, internal := strings.CutPrefix(imp, mod)
			if std(imp) || internal && allowed(dir) {
				continue
			}
			if internal {
				imp = dir
			}
			t.Errorf("%s → %s: api may import only the standard library and %s, which import only the standard library and each other",
				strings.Join(chain, " → "), imp, strings.Join(apiLeaves, ", "))
		}
	}
	check([]string{"api"}, func(dir string) bool { return slices.Contains(apiLeaves, dir) })
	for _, leaf := range apiLeaves {
		chain := []string{leaf}
		if info := pkgs["api"]; info != nil && info.imports[mod+leaf] {
			chain = []string{"api", leaf}
		}
		check(chain, func(dir string) bool { return dir != leaf && slices.Contains(apiLeaves, dir) })
	}
}

// TestStrictDecodingInStrictdoc: every document is decoded strictly in one
// place, package strictdoc, or its JSON half strictdoc/strictjson for the
// packages that must not import YAML or need a message kept byte for byte,
// so the same mistake gets the same words everywhere. No other non-test
// file asks encoding/json or the YAML package for strictness itself
// (DisallowUnknownFields, KnownFields(true)).
func TestStrictDecodingInStrictdoc(t *testing.T) {
	for _, p := range sourceFiles(t) {
		if strings.HasPrefix(p, "strictdoc/") {
			continue
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			// KnownFields(false) is the lax default; anything else may
			// be true.
			lax := len(call.Args) == 1 && isIdent(call.Args[0], "false")
			if sel.Sel.Name == "DisallowUnknownFields" || sel.Sel.Name == "KnownFields" && !lax {
				t.Errorf("%s: %s decodes strictly by hand; use package strictdoc, or strictdoc/strictjson where YAML must not be imported", fset.Position(call.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// TestNodeNamesNoHTTPStatus: the node says what kind of error happened
// (server.ErrConflict, server.ErrBusy, …) and package server alone turns
// kinds into HTTP statuses and problem bodies (server/errors.go). No
// non-test file of the node refers to an http.Status constant, writes a
// status, or builds an api.Error.
func TestNodeNamesNoHTTPStatus(t *testing.T) {
	for _, p := range sourceFiles(t) {
		if !strings.HasPrefix(p, "node/") {
			continue
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				switch {
				case isIdent(n.X, "http") && strings.HasPrefix(n.Sel.Name, "Status"):
					t.Errorf("%s: node names the HTTP status http.%s; return a server error kind instead", fset.Position(n.Pos()), n.Sel.Name)
				case n.Sel.Name == "WriteHeader":
					t.Errorf("%s: node writes an HTTP status; package server answers requests", fset.Position(n.Pos()))
				case isIdent(n.X, "api") && n.Sel.Name == "Error":
					t.Errorf("%s: node builds an api.Error; return a server error kind instead", fset.Position(n.Pos()))
				}
			case *ast.KeyValueExpr:
				if isIdent(n.Key, "Status") {
					if lit, ok := n.Value.(*ast.BasicLit); ok && lit.Kind == token.INT {
						t.Errorf("%s: node sets a status number %s; return a server error kind instead", fset.Position(n.Pos()), lit.Value)
					}
				}
			}
			return true
		})
	}
}
