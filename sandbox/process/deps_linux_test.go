package process

import (
	"archive/zip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// writeWheel builds a pure-Python wheel of a one-module package in dir:
// what `pip wheel` would make, without needing the wheel package.
func writeWheel(t testing.TB, dir, name, version, source string) string {
	t.Helper()
	file := filepath.Join(dir, fmt.Sprintf("%s-%s-py3-none-any.whl", name, version))
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	info := fmt.Sprintf("%s-%s.dist-info", name, version)
	files := [][2]string{
		{name + "/__init__.py", source},
		{info + "/METADATA", fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\n\n", name, version)},
		{info + "/WHEEL", "Wheel-Version: 1.0\nGenerator: andromeda-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var record strings.Builder
	for _, fl := range files {
		w, err := zw.Create(fl[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(fl[1])); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&record, "%s,,\n", fl[0])
	}
	fmt.Fprintf(&record, "%s/RECORD,,\n", info)
	w, err := zw.Create(info + "/RECORD")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(record.String())); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return file
}

// nodePackage is a local npm package directory.
func nodePackage(name, version, body string) map[string]string {
	return map[string]string{
		"package.json": fmt.Sprintf(`{"name": %q, "version": %q, "main": "index.js"}`, name, version),
		"index.js":     body,
	}
}

func prefixed(prefix string, files map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range files {
		out[filepath.Join(prefix, k)] = v
	}
	return out
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func depNames(deps []Dep) []string {
	var out []string
	for _, d := range deps {
		s := d.Language + ":" + d.Name + "@" + d.Version
		if d.Added {
			s += "+"
		}
		out = append(out, s)
	}
	return out
}

// TestNodeDeps installs a service's package.json dependencies from local
// package directories without the network, in CommonJS and ES module
// services, then adds and removes a package.
func TestNodeDeps(t *testing.T) {
	requireSandbox(t)
	requireInstaller(t, LangNode)
	registry := t.TempDir()
	if err := writeService(filepath.Join(registry, "extra-local"), nodePackage("extra-local", "0.1.0", "exports.extra = () => 'extra';\n")); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.WorkDir = filepath.Join(t.TempDir(), "work")
	cfg.Registries = map[string]string{LangNode: registry}
	d := newDriver(t, cfg)

	pkg := `{"name": "svc", "version": "1.0.0", "dependencies": {"leftpad-local": "file:vendor/leftpad-local"}}`
	lib := nodePackage("leftpad-local", "1.2.3", "exports.pad = (s) => '<' + s + '>';\n")
	dir := filepath.Join(t.TempDir(), "svc")
	if err := writeService(dir, merge(prefixed("vendor/leftpad-local", lib), map[string]string{
		"package.json": pkg,
		"index.js":     "const lp = require('leftpad-local');\nexports.handle = (input) => ({ noop: lp.pad(input.message) });\n",
		"esm.mjs":      "import lp from 'leftpad-local';\nexport async function decide(ctx) { return { noop: 'esm ' + lp.pad(ctx.message) }; }\n",
	})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ entry, want string }{{"index.js", "<x>"}, {"esm.mjs", "esm <x>"}} {
		start := time.Now()
		dep := deploy(t, d, sandbox.Spec{Service: "svc", Dir: dir, Entry: c.entry, Language: LangNode, Limits: sandbox.Limits{Concurrency: 1}})
		t.Logf("deploy %s (with install the first time): %v", c.entry, time.Since(start))
		exit, err := dep.Invoke(context.Background(), []byte(`{"run_id":"r","message":"x"}`))
		if err != nil || !strings.Contains(string(exit.Output), c.want) {
			t.Errorf("%s: %s %s %v, want a noop %q", c.entry, exit.Outcome, exit.Output, err, c.want)
		}
	}
	deps, err := d.ListDeps("svc")
	if err != nil || !slices.Equal(depNames(deps), []string{"node:leftpad-local@1.2.3"}) {
		t.Errorf("ListDeps = %v, %v; want leftpad-local 1.2.3", depNames(deps), err)
	}

	spec := sandbox.Spec{Service: "svc", Dir: dir, Entry: "index.js", Language: LangNode}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.AddDep(ctx, spec, filepath.Join(registry, "extra-local")); err != nil {
		t.Fatalf("AddDep = %v", err)
	}
	deps, _ = d.ListDeps("svc")
	if want := []string{"node:extra-local@0.1.0+", "node:leftpad-local@1.2.3"}; !slices.Equal(depNames(deps), want) {
		t.Errorf("after AddDep, ListDeps = %v, want %v", depNames(deps), want)
	}
	if err := d.RemoveDep(ctx, spec, "leftpad-local"); err == nil {
		t.Errorf("RemoveDep of a package the service declares = nil, want an error")
	}
	if err := d.RemoveDep(ctx, spec, "extra-local"); err != nil {
		t.Fatalf("RemoveDep = %v", err)
	}
	deps, _ = d.ListDeps("svc")
	if want := []string{"node:leftpad-local@1.2.3"}; !slices.Equal(depNames(deps), want) {
		t.Errorf("after RemoveDep, ListDeps = %v, want %v", depNames(deps), want)
	}
}

// TestPythonDeps installs requirements.txt from a local directory of wheels
// without the network, checks that two services get their own versions of
// one package, and adds and removes a package.
func TestPythonDeps(t *testing.T) {
	requireSandbox(t)
	requireInstaller(t, LangPython)
	registry := t.TempDir()
	writeWheel(t, registry, "pyleft", "1.0.0", "def pad(s):\n    return 'v1<' + s + '>'\n")
	writeWheel(t, registry, "pyleft", "2.0.0", "def pad(s):\n    return 'v2<' + s + '>'\n")
	writeWheel(t, registry, "pyextra", "0.3.0", "X = 1\n")
	cfg := testConfig()
	cfg.WorkDir = filepath.Join(t.TempDir(), "work")
	cfg.Registries = map[string]string{LangPython: registry}
	d := newDriver(t, cfg)

	main := "import pyleft\n\ndef handle(input):\n    return {'noop': pyleft.pad(input['message'])}\n"
	for _, v := range []string{"1", "2"} {
		dir := filepath.Join(t.TempDir(), "svc"+v)
		if err := writeService(dir, map[string]string{"main.py": main, "requirements.txt": "pyleft==" + v + ".0.0\n"}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		dep := deploy(t, d, sandbox.Spec{Service: "py" + v, Dir: dir, Entry: "main.py", Language: LangPython, Limits: sandbox.Limits{Concurrency: 1}})
		t.Logf("deploy py%s with install: %v", v, time.Since(start))
		exit, err := dep.Invoke(context.Background(), []byte(`{"run_id":"r","message":"x"}`))
		if want := `"noop":"v` + v + `<x>"`; err != nil || !strings.Contains(string(exit.Output), want) {
			t.Errorf("service py%s: %s %s %s %v, want %s", v, exit.Outcome, exit.Output, exit.Detail, err, want)
		}
	}
	deps, err := d.ListDeps("py2")
	if err != nil || !slices.Equal(depNames(deps), []string{"python:pyleft@2.0.0"}) {
		t.Errorf("ListDeps(py2) = %v, %v", depNames(deps), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := sandbox.Spec{Service: "py1", Dir: filepath.Join(registry, "none"), Entry: "main.py", Language: LangPython}
	spec.Dir = filepath.Dir(filepath.Join(t.TempDir(), "x")) // a service dir without requirements: only the added package
	if err := d.AddDep(ctx, spec, "pyextra==0.3.0"); err != nil {
		t.Fatalf("AddDep = %v", err)
	}
	deps, _ = d.ListDeps("py1")
	if want := []string{"python:pyextra@0.3.0+"}; !slices.Equal(depNames(deps), want) {
		t.Errorf("after AddDep, ListDeps = %v, want %v", depNames(deps), want)
	}
	if err := d.RemoveDep(ctx, spec, "PyExtra"); err != nil {
		t.Fatalf("RemoveDep = %v", err)
	}
	if deps, _ = d.ListDeps("py1"); len(deps) != 0 {
		t.Errorf("after RemoveDep, ListDeps = %v, want none", depNames(deps))
	}
}
