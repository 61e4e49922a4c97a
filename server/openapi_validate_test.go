package server

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIValidates: the API document passes a real OpenAPI 3
// validator (kin-openapi's loader and validator with its defaults, all
// strict: unknown fields, examples and defaults checked against their
// schemas, patterns compiled; see openapiLoaded).
func TestOpenAPIValidates(t *testing.T) {
	loadOpenAPI(t)
}

// TestOpenAPIListsEveryRoute: every route the server registers is in the
// API document, and every operation of the document is a route the
// server registers: the two are checked both ways, pattern by pattern.
// Left out, each with its reason: "/" (the answer to any path no route
// takes: a problem+json 404) and the dashboard's pages under /ui (HTML,
// not the JSON API).
func TestOpenAPIListsEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	s := New(&browserBackend{}, Config{SeedEndpoint: true}, nil)
	served := map[string]bool{}
	// The webhook listener of its own (NewHooks) serves a part of the
	// node's routes.
	hooks := NewHooks(&fakeBackend{}, Config{}, nil)
	for _, p := range hooks.mux.patterns {
		if !slices.Contains(s.mux.patterns, p) {
			t.Errorf("the webhook listener serves %s, which the node's API does not", p)
		}
	}
	for _, p := range s.mux.patterns {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			method, path = "*", p
		}
		if path == "/" || path == "/ui" || strings.HasPrefix(path, "/ui/") {
			continue
		}
		// A wildcard of several segments, or a subtree ("/hooks/"), is
		// one parameter in the document.
		path = strings.ReplaceAll(path, "...}", "}")
		if strings.HasSuffix(path, "/") {
			path += "{path}"
		}
		served[method+" "+path] = true
	}
	for op := range served {
		method, path, _ := strings.Cut(op, " ")
		if method == "*" {
			// A route for any method: documented under at least one.
			found := false
			for d := range documented {
				if _, dp, _ := strings.Cut(d, " "); dp == path {
					found = true
				}
			}
			if !found {
				t.Errorf("%s (any method) is served but not in the API document", path)
			}
			continue
		}
		if !documented[op] {
			t.Errorf("%s is served but not in the API document", op)
		}
	}
	for op := range documented {
		method, path, _ := strings.Cut(op, " ")
		if !served[op] && !served["* "+path] {
			t.Errorf("%s %s is in the API document but no route serves it", method, path)
		}
	}
}

// browserBackend serves a browser runtime, so that its routes are
// registered: with it, the test backend implements every optional
// interface that decides whether routes are registered
// (TestOpenAPIBackendRegistersAll).
type browserBackend struct{ fakeBackend }

// TestOpenAPIBackendRegistersAll: the backend TestOpenAPIListsEveryRoute
// registers routes with implements every optional interface a *Routes
// method asks the backend for (bb, ok := s.b.(BrowserBackend)), so that
// no route goes unchecked for want of a method in the test backend.
func TestOpenAPIBackendRegistersAll(t *testing.T) {
	optional := map[string]reflect.Type{
		"BrowserBackend":   reflect.TypeFor[BrowserBackend](),
		"ClusterBackend":   reflect.TypeFor[ClusterBackend](),
		"ConfigBackend":    reflect.TypeFor[ConfigBackend](),
		"FileBackend":      reflect.TypeFor[FileBackend](),
		"FlowBackend":      reflect.TypeFor[FlowBackend](),
		"FlowRunner":       reflect.TypeFor[FlowRunner](),
		"ForwardsBackend":  reflect.TypeFor[ForwardsBackend](),
		"HookBackend":      reflect.TypeFor[HookBackend](),
		"KeyBackend":       reflect.TypeFor[KeyBackend](),
		"LifecycleBackend": reflect.TypeFor[LifecycleBackend](),
		"OfferBackend":     reflect.TypeFor[OfferBackend](),
		"PlanBackend":      reflect.TypeFor[PlanBackend](),
		"RunBackend":       reflect.TypeFor[RunBackend](),
		"StateBackend":     reflect.TypeFor[StateBackend](),
		"UsageBackend":     reflect.TypeFor[UsageBackend](),
		"WatchBackend":     reflect.TypeFor[WatchBackend](),
		"WhyBackend":       reflect.TypeFor[WhyBackend](),
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || !strings.HasSuffix(fn.Name.Name, "Routes") {
				continue
			}
			ast.Inspect(fn, func(node ast.Node) bool {
				// v, ok := s.b.(T): the routes that follow depend on ok.
				as, ok := node.(*ast.AssignStmt)
				if !ok || len(as.Lhs) != 2 || len(as.Rhs) != 1 {
					return true
				}
				ta, _ := as.Rhs[0].(*ast.TypeAssertExpr)
				if found, _ := as.Lhs[1].(*ast.Ident); ta == nil || found == nil || found.Name == "_" {
					return true
				}
				iface, _ := ta.Type.(*ast.Ident)
				if sel, _ := ta.X.(*ast.SelectorExpr); sel == nil || sel.Sel.Name != "b" || iface == nil {
					return true
				}
				n++
				typ, known := optional[iface.Name]
				switch {
				case !known:
					t.Errorf("%s: %s asks the backend for %s: add it to this test's list, and its methods to the test backend", fset.Position(ta.Pos()), fn.Name.Name, iface.Name)
				case !reflect.TypeFor[*browserBackend]().Implements(typ):
					t.Errorf("the test backend does not implement %s: the routes %s registers with it go unchecked", iface.Name, fn.Name.Name)
				}
				return true
			})
		}
	}
	if n < len(optional) {
		t.Errorf("found %d optional interfaces in the *Routes methods, want at least %d", n, len(optional))
	}
}

func (browserBackend) BrowserRuntime() http.Handler { return http.NotFoundHandler() }
