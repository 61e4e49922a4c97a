package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/node"
)

// startFixture is a config directory holding services in each form the
// services list takes, and an HTTPS server serving one as a source.
type startFixture struct {
	dir   string // the config file's directory
	srv   *httptest.Server
	hits  atomic.Int64 // fetches of the source archive
	allow string       // the server's host, for allowed_sources
}

func newStartFixture(t *testing.T) *startFixture {
	t.Helper()
	f := &startFixture{dir: t.TempDir()}
	// A directory, relative to the config file.
	copyDir(t, echoService(t, "start-dir"), filepath.Join(f.dir, "services", "weather"))
	// An archive.
	os.MkdirAll(filepath.Join(f.dir, "dist"), 0o755)
	if err := os.WriteFile(filepath.Join(f.dir, "dist", "feed.tar.gz"), pack(t, echoService(t, "start-archive")), 0o644); err != nil {
		t.Fatal(err)
	}
	// A service the policy refuses.
	copyDir(t, echoService(t, "start-refused"), filepath.Join(f.dir, "services", "refused"))
	// A source: a manifest naming an archive on an HTTPS server.
	src := echoService(t, "start-source")
	data := pack(t, src)
	info, err := archive.Inspect(strings.NewReader(string(data)), archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		w.Write(data)
	}))
	t.Cleanup(f.srv.Close)
	u, _ := url.Parse(f.srv.URL)
	f.allow = u.Host
	m, _ := os.ReadFile(filepath.Join(src, "andromeda.yaml"))
	m = append(m, []byte("source: {location: \""+f.srv.URL+"/feed.tar.gz\", digest: \""+info.Digest+"\"}\n")...)
	os.MkdirAll(filepath.Join(f.dir, "manifests"), 0o755)
	if err := os.WriteFile(filepath.Join(f.dir, "manifests", "remote.yaml"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// config writes a config file listing services and returns it loaded.
func (f *startFixture) config(t *testing.T, data, services string) node.Config {
	t.Helper()
	doc := "policy:\n  allowed_sources: [\"" + f.allow + "\"]\n" +
		"  rules:\n    - {name: no-refused, expr: 'service.name != \"start-refused\"', message: start-refused is not wanted here}\n" +
		"services:\n" + services
	name := filepath.Join(f.dir, "andromeda.yaml")
	if err := os.WriteFile(name, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data, cfg.Listen, cfg.Name, cfg.Cache = data, "127.0.0.1:0", "test", sharedCache(t)
	cfg.Docker.Enabled = false
	return cfg
}

// start starts a node on cfg, trusting the fixture's server, with its log
// in logs.
func (f *startFixture) start(t *testing.T, cfg node.Config, logs *syncBuffer) (*node.Node, error) {
	t.Helper()
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetHTTPClient(f.srv.Client())
	if err := n.Start(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Close() })
	return n, nil
}

const startList = `  - {dir: services/weather}
  - {archive: ./dist/feed.tar.gz}
  - {dir: services/nowhere}
  - {dir: services/refused}
  - {source: manifests/remote.yaml, owner: alice}
`

// TestStartServices starts a node whose config lists a directory, an
// archive, a missing directory, a service the policy refuses and a
// source: the admitted ones run, the two others are reported with their
// reasons and the node starts; a restart finds every admitted one
// unchanged and fetches nothing.
func TestStartServices(t *testing.T) {
	ctx := context.Background()
	f := newStartFixture(t)
	data := t.TempDir()
	var logs syncBuffer
	n, err := f.start(t, f.config(t, data, startList), &logs)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	res := n.StartResults()
	want := []struct{ entry, service, state, reason string }{
		{"services[0]", "start-dir", node.StartDeployed, ""},
		{"services[1]", "start-archive", node.StartDeployed, ""},
		{"services[2]", "", node.StartFailed, "services[2].dir: stat " + filepath.Join(f.dir, "services", "nowhere") + ": no such file or directory"},
		{"services[3]", "start-refused", node.StartRefused, "rules.no-refused: start-refused is not wanted here"},
		{"services[4]", "start-source", node.StartDeployed, ""},
	}
	if len(res) != len(want) {
		t.Fatalf("StartResults = %+v, want %d", res, len(want))
	}
	for i, w := range want {
		r := res[i]
		if r.Entry != w.entry || r.Service != w.service || r.State != w.state {
			t.Errorf("result %d = %+v, want %s %s %s", i, r, w.entry, w.service, w.state)
		}
		if w.reason != "" && (len(r.Reasons) == 0 || !strings.Contains(strings.Join(r.Reasons, "\n"), w.reason)) {
			t.Errorf("result %d reasons = %q, want %q", i, r.Reasons, w.reason)
		}
		if r.OK() && !strings.HasPrefix(r.Digest, "sha256:") {
			t.Errorf("result %d has no digest: %+v", i, r)
		}
	}
	// Each decision is logged, a refusal with one line per reason.
	log := logs.String()
	for _, s := range []string{
		`msg="start service" entry=services[0] dir=` + filepath.Join(f.dir, "services", "weather") + ` service=start-dir version=1.0.0 digest=sha256:`,
		`msg="start service refused" entry=services[3]`,
		`msg="start service refused: reason" entry=services[3] service=start-refused reason="rules.no-refused: start-refused is not wanted here"`,
		`msg="start service failed" entry=services[2]`,
	} {
		if !strings.Contains(log, s) {
			t.Errorf("log lacks %q:\n%s", s, log)
		}
	}
	// The admitted ones run; the source one is alice's.
	tok, _ := node.OperatorToken(data)
	op := api.NewClient(n.Addr(), tok)
	for _, name := range []string{"start-dir", "start-archive", "start-source"} {
		// echo.wasm writes its input back, which is no valid output: a
		// run whose error quotes the input shows the guest ran.
		run, err := op.Fire(ctx, name, json.RawMessage(`{"noop":"started"}`))
		if err != nil || run.Service != name || run.Outcome != "error" || !strings.Contains(run.Error, `unknown field "run_id"`) {
			t.Errorf("fire %s = %+v, %v", name, run, err)
		}
	}
	if s, err := op.Service(ctx, "start-source"); err != nil || s.Owner != "alice" {
		t.Errorf("start-source = %+v, %v; want owned by alice", s, err)
	}
	if s, err := op.Service(ctx, "start-refused"); err == nil {
		t.Errorf("the refused service is registered: %+v", s)
	}
	if got := f.hits.Load(); got != 1 {
		t.Errorf("source fetched %d times, want 1", got)
	}

	// A restart: every admitted service is already deployed, and the
	// source is not fetched again.
	n.Close()
	var logs2 syncBuffer
	n2, err := f.start(t, f.config(t, data, startList), &logs2)
	if err != nil {
		t.Fatalf("restart: %v\n%s", err, logs2.String())
	}
	for i, r := range n2.StartResults() {
		wantState := map[string]string{node.StartDeployed: node.StartUnchanged}[want[i].state]
		if wantState == "" {
			wantState = want[i].state
		}
		if r.State != wantState {
			t.Errorf("after restart result %d = %+v, want %s", i, r, wantState)
		}
	}
	if got := f.hits.Load(); got != 1 {
		t.Errorf("source fetched %d times after a restart, want 1", got)
	}
	if line := n2.StartResults()[0].Format("services: "); !strings.Contains(line, "start-dir") || !strings.Contains(line, "already deployed") {
		t.Errorf("Format = %q", line)
	}
}

// TestStartServicesRequired: a required entry the policy refuses, or one
// that cannot be read, fails the start with the reason; the node it
// started is closed (its data dir can be opened again).
func TestStartServicesRequired(t *testing.T) {
	f := newStartFixture(t)
	data := t.TempDir()
	for _, tc := range []struct{ name, list, want string }{
		{"refused", "  - {dir: services/weather}\n  - {dir: services/refused, required: true}\n",
			"services[1] is required: admission: start-refused 1.0.0 was rejected (rules.no-refused: start-refused is not wanted here)"},
		{"missing", "  - {archive: dist/none.tar.gz, required: true}\n",
			"services[0] is required: services[0].archive: open " + filepath.Join(f.dir, "dist", "none.tar.gz")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			_, err := f.start(t, f.config(t, data, tc.list), &logs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start = %v, want %q", err, tc.want)
			}
			if tc.name == "refused" && !strings.Contains(logs.String(), "start-refused is not wanted here") {
				t.Errorf("the refusal's reason is not logged:\n%s", logs.String())
			}
		})
	}
	// Not required: the same list starts.
	var logs syncBuffer
	if _, err := f.start(t, f.config(t, data, "  - {dir: services/refused}\n"), &logs); err != nil {
		t.Fatalf("start without required: %v", err)
	}
}

// TestStartServicesConfig: the list's shape is checked with the config,
// each problem named by its path.
func TestStartServicesConfig(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"dir and archive", "services:\n  - {dir: a, archive: b.tar.gz}\n", "services[0]: sets dir and archive; an entry is exactly one of dir, archive or source"},
		{"all three", "services:\n  - {dir: a}\n  - {dir: a, archive: b, source: c}\n", "services[1]: sets dir and archive and source"},
		{"none", "services:\n  - {required: true}\n", "services[0]: must set one of dir, archive or source"},
		{"empty entry", "services:\n  - {dir: a}\n  - {}\n", "services[1]: must set one of dir, archive or source"},
		{"empty path", "services:\n  - {dir: \"\"}\n", "services[0]: must set one of dir, archive or source"},
		{"bad owner", "services:\n  - {dir: a, owner: Alice!}\n", "services[0].owner: must be operator or a token name"},
		{"unknown key", "services:\n  - {dir: a, path: b}\n", "services[0].path"},
		{"wrong type", "services:\n  - {dir: a, required: sometimes}\n", "services[0].required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := node.ParseConfig([]byte(tc.doc), false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseConfig(%q) = %v, want %q", tc.doc, err, tc.want)
			}
		})
	}
	// Relative paths are the config file's directory's; absolute ones stay.
	dir := t.TempDir()
	name := filepath.Join(dir, "andromeda.yaml")
	os.WriteFile(name, []byte("services:\n  - {dir: ./svc/a}\n  - {archive: /abs/b.tar.gz}\n  - {source: m.yaml, required: true}\n"), 0o644)
	cfg, err := node.LoadConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	want := []node.StartService{{Dir: filepath.Join(dir, "svc", "a")}, {Archive: "/abs/b.tar.gz"}, {Source: filepath.Join(dir, "m.yaml"), Required: true}}
	if len(cfg.Services) != len(want) {
		t.Fatalf("services = %+v", cfg.Services)
	}
	for i := range want {
		if cfg.Services[i] != want[i] {
			t.Errorf("services[%d] = %+v, want %+v", i, cfg.Services[i], want[i])
		}
	}
}

// TestStartServicesSameServiceInOrder: the list's entries are submitted
// side by side, but two entries of one service keep the list's order: the
// later version is the one registered, whichever entry is read first.
func TestStartServicesSameServiceInOrder(t *testing.T) {
	ctx := context.Background()
	f := newStartFixture(t)
	newer := filepath.Join(f.dir, "services", "weather-newer")
	copyDir(t, filepath.Join(f.dir, "services", "weather"), newer)
	m := filepath.Join(newer, "andromeda.yaml")
	b, _ := os.ReadFile(m)
	os.WriteFile(m, []byte(strings.Replace(string(b), "version: 1.0.0", "version: 1.1.0", 1)), 0o644)
	list := "  - {dir: services/weather}\n  - {archive: ./dist/feed.tar.gz}\n  - {dir: services/weather-newer}\n"
	var logs syncBuffer
	data := t.TempDir()
	n, err := f.start(t, f.config(t, data, list), &logs)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	res := n.StartResults()
	if len(res) != 3 || res[0].Version != "1.0.0" || res[2].Version != "1.1.0" {
		t.Fatalf("StartResults = %+v", res)
	}
	for i, r := range res {
		if r.State != node.StartDeployed || r.Entry != fmt.Sprintf("services[%d]", i) {
			t.Errorf("result %d = %+v, want deployed", i, r)
		}
	}
	tok, _ := node.OperatorToken(data)
	if s, err := api.NewClient(n.Addr(), tok).Service(ctx, "start-dir"); err != nil || s.Version != "1.1.0" {
		t.Fatalf("start-dir = %+v, %v; want version 1.1.0, the later entry", s, err)
	}
}
