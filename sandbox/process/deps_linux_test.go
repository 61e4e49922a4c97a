package process

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/deps"
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

func depNames(deps []deps.Dep) []string {
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
// services, then adds and removes a package from the local registry. The
// service vendors a package (file:vendor/…), which only an operator's
// Config.AllowAnyDepSource lets through (TestDepsRegistryInstalls checks
// the refusal).
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
	cfg.AllowAnyDepSource = true
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
		var steps []string // what the install says of itself (sandbox.Progress)
		ctx := sandbox.WithProgress(context.Background(), func(s string) { steps = append(steps, s) })
		dep := deployCtx(t, ctx, d, sandbox.Spec{Service: "py" + v, Dir: dir, Entry: "main.py", Language: LangPython, Limits: sandbox.Limits{Concurrency: 1}})
		t.Logf("deploy py%s with install: %v", v, time.Since(start))
		if len(steps) != 2 || !strings.HasPrefix(steps[0], "installing python dependencies (requirements.txt) with ") || !strings.HasPrefix(steps[1], "installed python dependencies in ") {
			t.Errorf("deploy py%s said %q; want the install's start and end", v, steps)
		}
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

// testRegistry is a package registry on loopback, as an operator would
// configure one: a PEP 503 simple index of wheels under /simple/ (files
// under /files/) and an npm registry under /npm/. It counts the requests
// it serves: an installer in its own network namespace reaches it only
// through the egress proxy.
type testRegistry struct {
	t        testing.TB
	srv      *httptest.Server
	wheels   string
	requests atomic.Int64

	mu  sync.Mutex
	npm map[string]map[string][]byte // name → version → tarball
}

func newTestRegistry(t testing.TB) *testRegistry {
	r := &testRegistry{t: t, wheels: t.TempDir(), npm: map[string]map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// pythonURL and npmURL are the registries' URLs for Config.Registries.
func (r *testRegistry) pythonURL() string { return r.srv.URL + "/simple" }
func (r *testRegistry) npmURL() string    { return r.srv.URL + "/npm/" }

// hostPort is the registry's address, 127.0.0.1:port.
func (r *testRegistry) hostPort() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func (r *testRegistry) addWheel(name, version, source string) {
	writeWheel(r.t, r.wheels, name, version, source)
}

// addNPM publishes an npm package of files (under package/ in its tarball).
func (r *testRegistry) addNPM(name, version string, files map[string]string) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range slices.Sorted(maps.Keys(files)) {
		body := files[n]
		if err := tw.WriteHeader(&tar.Header{Name: "package/" + n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			r.t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		r.t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.npm[name] == nil {
		r.npm[name] = map[string][]byte{}
	}
	r.npm[name][version] = buf.Bytes()
}

// pypiName spells a distribution's name as the simple index compares
// names (PEP 503).
func pypiName(name string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
}

func (r *testRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	p := req.URL.Path
	switch {
	case strings.HasPrefix(p, "/simple/"):
		want := pypiName(strings.Trim(strings.TrimPrefix(p, "/simple/"), "/"))
		files, _ := filepath.Glob(filepath.Join(r.wheels, "*.whl"))
		var b strings.Builder
		b.WriteString("<!DOCTYPE html><html><body>\n")
		for _, f := range files {
			base := filepath.Base(f)
			if dist, _, _ := strings.Cut(base, "-"); pypiName(dist) != want {
				continue
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(&b, "<a href=\"/files/%s#sha256=%x\">%s</a><br>\n", base, sha256.Sum256(raw), base)
		}
		b.WriteString("</body></html>\n")
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, b.String())
	case strings.HasPrefix(p, "/files/"):
		http.ServeFile(w, req, filepath.Join(r.wheels, filepath.Base(p)))
	case strings.HasPrefix(p, "/npm/"):
		name, file, isTarball := strings.Cut(strings.TrimPrefix(p, "/npm/"), "/-/")
		r.mu.Lock()
		versions := r.npm[name]
		r.mu.Unlock()
		if versions == nil {
			http.NotFound(w, req)
			return
		}
		if isTarball {
			for v, tgz := range versions {
				if file == path.Base(name)+"-"+v+".tgz" {
					w.Header().Set("Content-Type", "application/octet-stream")
					w.Write(tgz)
					return
				}
			}
			http.NotFound(w, req)
			return
		}
		doc := map[string]any{"name": name}
		vs := map[string]any{}
		latest := ""
		for _, v := range slices.Sorted(maps.Keys(versions)) {
			tgz := versions[v]
			sha1sum := sha1.Sum(tgz)
			sha512sum := sha512.Sum512(tgz)
			vs[v] = map[string]any{"name": name, "version": v, "main": "index.js", "dist": map[string]any{
				"tarball":   r.srv.URL + "/npm/" + name + "/-/" + path.Base(name) + "-" + v + ".tgz",
				"shasum":    hex.EncodeToString(sha1sum[:]),
				"integrity": "sha512-" + base64.StdEncoding.EncodeToString(sha512sum[:]),
			}}
			latest = v
		}
		doc["versions"] = vs
		doc["dist-tags"] = map[string]string{"latest": latest}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	default:
		http.NotFound(w, req)
	}
}

// apiListener is a stand-in for the node's API on the host's loopback: it
// counts the connections it accepts.
type apiListener struct {
	ln       net.Listener
	accepted atomic.Int64
}

func newAPIListener(t testing.TB) *apiListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &apiListener{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.accepted.Add(1)
			c.Close()
		}
	}()
	return a
}

func (a *apiListener) port() int { return a.ln.Addr().(*net.TCPAddr).Port }

// evilProject is a local Python project whose in-tree build backend tries,
// when pip runs it, to reach the node's API at apiPort, to write marker
// and to report what it saw; it then fails the build with its report.
func evilProject(apiPort int, marker string) map[string]string {
	return map[string]string{
		"evilpkg/pyproject.toml": "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n\n[project]\nname = \"evilpkg\"\nversion = \"1.0\"\n",
		"evilpkg/backend.py": fmt.Sprintf(`import json, socket
report = {}
try:
    socket.create_connection(("127.0.0.1", %d), timeout=5).close()
    report["api"] = "connected"
except Exception as e:
    report["api"] = str(e)
try:
    open(%q, "w").write("pwned")
    report["marker"] = "written"
except Exception as e:
    report["marker"] = str(e)
raise SystemExit("EVIL-REPORT " + json.dumps(report))
`, apiPort, marker),
	}
}

// TestDepsRefuseServiceCode deploys a Python service whose requirements.txt
// names its own project, ./evilpkg, whose build backend (the service's
// code, which pip would run at install) tries to reach a listener standing
// in for the node's API and write a marker file: the install is refused
// before anything runs, with an error naming the file, line and rule.
// With Config.AllowAnyDepSource the operator lets the backend run, and it
// runs in the install sandbox, where the API is out of reach.
func TestDepsRefuseServiceCode(t *testing.T) {
	requireSandbox(t)
	requireInstaller(t, LangPython)
	api := newAPIListener(t)
	markerDir := t.TempDir()
	if err := os.Chmod(markerDir, 0o777); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(markerDir, "pwned")
	reg := newTestRegistry(t)
	reg.addWheel("pyleft", "1.0.0", "def pad(s):\n    return 'v1<' + s + '>'\n")
	dir := filepath.Join(t.TempDir(), "svc")
	if err := writeService(dir, merge(evilProject(api.port(), marker), map[string]string{
		"main.py":          "def handle(input):\n    return {'noop': 'x'}\n",
		"requirements.txt": "pyleft==1.0.0\n# the service's own project\n./evilpkg\n",
	})); err != nil {
		t.Fatal(err)
	}
	spec := sandbox.Spec{Service: "evil", Dir: dir, Entry: "main.py", Language: LangPython, Limits: sandbox.Limits{Concurrency: 1}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfg := testConfig()
	cfg.WorkDir = filepath.Join(t.TempDir(), "work")
	cfg.Registries = map[string]string{LangPython: reg.pythonURL()}
	d := newDriver(t, cfg)
	dep, err := d.Deploy(ctx, spec)
	if err == nil {
		dep.Stop(ctx)
		t.Fatal("Deploy of a service whose requirements.txt names ./evilpkg = nil, want an error")
	}
	const want = "requirements.txt:3: local paths, URLs and VCS requirements are not allowed (only name[extras] version-specifier lines)"
	var dse *deps.SourceError
	if !errors.As(err, &dse) || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Deploy = %v, want a *deps.SourceError ending %q", err, want)
	}
	if err := d.AddDep(ctx, spec, "./evilpkg"); err == nil || !errors.As(err, &dse) {
		t.Errorf("AddDep(./evilpkg) = %v, want a *deps.SourceError", err)
	}
	if n := reg.requests.Load(); n != 0 {
		t.Errorf("the registry served %d requests, want none (refused before the installer starts)", n)
	}

	t.Run("allowed", func(t *testing.T) {
		cfg.WorkDir = filepath.Join(t.TempDir(), "work")
		cfg.AllowAnyDepSource = true
		d := newDriver(t, cfg)
		dep, err := d.Deploy(ctx, spec)
		if err == nil {
			dep.Stop(ctx)
			t.Fatal("Deploy with a build backend that fails = nil, want an error")
		}
		i := strings.Index(err.Error(), "EVIL-REPORT ")
		if i < 0 {
			t.Fatalf("Deploy = %v, want the build backend's report", err)
		}
		var report struct{ API, Marker string }
		dec := json.NewDecoder(strings.NewReader(err.Error()[i+len("EVIL-REPORT "):]))
		if err := dec.Decode(&report); err != nil {
			t.Fatalf("decode the backend's report: %v (%s)", err, err)
		}
		t.Logf("the backend, run by pip in the install sandbox, reported %+v", report)
		if report.API == "connected" || !strings.Contains(report.API, "refused") {
			t.Errorf("the backend's connection to the API: %q, want connection refused", report.API)
		}
		if report.Marker == "written" {
			t.Errorf("the backend wrote its marker")
		}
	})

	if n := api.accepted.Load(); n != 0 {
		t.Errorf("the API listener accepted %d connections, want none", n)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker %s: %v, want it absent", marker, err)
	}
}

// TestDepsRegistryInstalls installs a Python and a Node.js service's
// dependencies from a registry on the host's loopback, which the installer
// reaches only through the egress proxy, and checks that a package.json
// naming a local path is refused.
func TestDepsRegistryInstalls(t *testing.T) {
	requireSandbox(t)
	reg := newTestRegistry(t)
	reg.addWheel("pyleft", "1.0.0", "def pad(s):\n    return 'v1<' + s + '>'\n")
	reg.addWheel("pyleft", "2.0.0", "def pad(s):\n    return 'v2<' + s + '>'\n")
	reg.addNPM("leftpad-reg", "1.0.0", nodePackage("leftpad-reg", "1.0.0", "exports.pad = (s) => '1<' + s + '>';\n"))
	reg.addNPM("leftpad-reg", "1.2.0", nodePackage("leftpad-reg", "1.2.0", "exports.pad = (s) => '12<' + s + '>';\n"))
	cfg := testConfig()
	cfg.WorkDir = filepath.Join(t.TempDir(), "work")
	cfg.Registries = map[string]string{LangPython: reg.pythonURL(), LangNode: reg.npmURL()}
	d := newDriver(t, cfg)
	invoke := func(t *testing.T, spec sandbox.Spec, want string) {
		t.Helper()
		before := reg.requests.Load()
		start := time.Now()
		dep := deploy(t, d, spec)
		t.Logf("deploy with install: %v, %d registry requests", time.Since(start), reg.requests.Load()-before)
		if reg.requests.Load() == before {
			t.Errorf("the registry served no request, want the install's")
		}
		exit, err := dep.Invoke(context.Background(), []byte(`{"run_id":"r","message":"x"}`))
		if err != nil || !strings.Contains(string(exit.Output), want) {
			t.Errorf("%s %s %s %v, want a noop %q", exit.Outcome, exit.Output, exit.Detail, err, want)
		}
	}

	t.Run("python", func(t *testing.T) {
		requireInstaller(t, LangPython)
		dir := filepath.Join(t.TempDir(), "svc")
		if err := writeService(dir, map[string]string{
			"main.py":          "import pyleft\n\ndef handle(input):\n    return {'noop': pyleft.pad(input['message'])}\n",
			"requirements.txt": "-r base.txt\n",
			"base.txt":         "pyleft>=1,<3  # from the registry\n",
		}); err != nil {
			t.Fatal(err)
		}
		invoke(t, sandbox.Spec{Service: "pyreg", Dir: dir, Entry: "main.py", Language: LangPython, Limits: sandbox.Limits{Concurrency: 1}}, `"noop":"v2<x>"`)
	})
	t.Run("node", func(t *testing.T) {
		requireInstaller(t, LangNode)
		dir := filepath.Join(t.TempDir(), "svc")
		if err := writeService(dir, map[string]string{
			"package.json": `{"name": "svc", "version": "1.0.0", "dependencies": {"leftpad-reg": "^1.0.0"}}`,
			"index.js":     "const lp = require('leftpad-reg');\nexports.handle = (input) => ({ noop: lp.pad(input.message) });\n",
		}); err != nil {
			t.Fatal(err)
		}
		invoke(t, sandbox.Spec{Service: "nodereg", Dir: dir, Entry: "index.js", Language: LangNode, Limits: sandbox.Limits{Concurrency: 1}}, `"noop":"12<x>"`)
	})
	t.Run("node local path refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "svc")
		if err := writeService(dir, merge(prefixed("vendor/evil", nodePackage("evil", "1.0.0", "")), map[string]string{
			"package.json": "{\n  \"name\": \"svc\",\n  \"dependencies\": {\n    \"evil\": \"file:vendor/evil\"\n  }\n}\n",
			"index.js":     "exports.handle = () => ({ noop: 'x' });\n",
		})); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		dep, err := d.Deploy(ctx, sandbox.Spec{Service: "nodeevil", Dir: dir, Entry: "index.js", Language: LangNode})
		if err == nil {
			dep.Stop(ctx)
		}
		const want = `package.json:4: dependencies["evil"] = "file:vendor/evil": local paths, URLs and git specs are not allowed`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Deploy = %v, want an error with %q", err, want)
		}
	})
}
