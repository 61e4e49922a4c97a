package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/docker"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// built holds the examples compiled once per test binary.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// example returns a copy of examples/<name> with its main.wasm built.
func example(t testing.TB, name string) string {
	t.Helper()
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the example services")
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "andromeda-node-test-")
		if buildErr != nil {
			return
		}
		for _, ex := range []struct {
			name  string
			shape gobuild.Shape
		}{{"price-watch", gobuild.Reactor}, {"greeter", gobuild.Reactor}, {"heartbeat", gobuild.Command}} {
			out := filepath.Join(buildDir, ex.name+".wasm")
			if buildErr = gobuild.Wasm(context.Background(), filepath.Join("..", "examples", ex.name), out, ex.shape); buildErr != nil {
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir := t.TempDir()
	src := filepath.Join("..", "examples", name)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "main.wasm" {
			continue
		}
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dir, e.Name()))
	}
	copyFile(t, filepath.Join(buildDir, name+".wasm"), filepath.Join(dir, "main.wasm"))
	return dir
}

// sharedCache is one compile cache for every node of the test binary, so
// each example is compiled by wazero once, as on a restarted node.
var (
	cacheOnce sync.Once
	cacheDir  string
)

func sharedCache(t testing.TB) string {
	cacheOnce.Do(func() {
		var err error
		if cacheDir, err = os.MkdirTemp("", "andromeda-cache-"); err != nil {
			t.Fatal(err)
		}
	})
	return cacheDir
}

func TestMain(m *testing.M) {
	process.MaybeInit() // the process driver re-executes this binary as its sandbox init
	docker.MaybeRelay() // the docker driver runs it in containers as a worker's relay
	code := m.Run()
	for _, d := range []string{buildDir, cacheDir, execGuestDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

type testNode struct {
	*node.Node
	cfg node.Config
	op  *api.Client
}

func startNode(t testing.TB, mutate ...func(*node.Config)) *testNode {
	t.Helper()
	return startNodeWith(t, nil, mutate...)
}

// startNodeWith is startNode with d, when not nil, in place of the node's
// driver of the same name.
func startNodeWith(t testing.TB, d sandbox.Driver, mutate ...func(*node.Config)) *testNode {
	t.Helper()
	n, err := startNodeWithErr(t, d, mutate...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startNodeErr is startNode returning the start's error (the node is
// closed at the test's end when it started).
func startNodeErr(t testing.TB, mutate ...func(*node.Config)) (*testNode, error) {
	return startNodeWithErr(t, nil, mutate...)
}

func startNodeWithErr(t testing.TB, d sandbox.Driver, mutate ...func(*node.Config)) (*testNode, error) {
	cfg := node.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Name = "test"
	cfg.Cache = sharedCache(t)
	// The docker driver's self-test creates a container at every start;
	// the tests that use it turn it on (docker_test.go).
	cfg.Docker.Enabled = false
	for _, f := range mutate {
		f(&cfg)
	}
	var lg *slog.Logger // ANDROMEDA_TEST_LOG=1: the nodes' logs on stderr, to see what a failing test did
	if os.Getenv("ANDROMEDA_TEST_LOG") != "" {
		lg = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", cfg.Name)
	}
	n, err := node.New(cfg, lg)
	if err != nil {
		return nil, err
	}
	if d != nil {
		node.ReplaceDriver(n, d)
	}
	if err := n.Start(context.Background()); err != nil {
		return nil, err
	}
	t.Cleanup(func() { n.Close() })
	tok, err := node.OperatorToken(cfg.Data)
	if err != nil {
		return nil, err
	}
	return &testNode{Node: n, cfg: cfg, op: api.NewClient(n.Addr(), tok)}, nil
}

func pack(t testing.TB, dir string) []byte {
	t.Helper()
	b, err := archive.Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	res, err := n.op.Submit(ctx, pack(t, example(t, "greeter")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Service.Name != "greeter" || res.Service.Decision.Verdict != "run" || res.Service.Status != "deployed" || !strings.HasPrefix(res.Service.Digest, "sha256:") {
		t.Fatalf("submit = %+v", res.Service)
	}
	run, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"Ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	if run.Outcome != "ok" || run.Output == nil || len(run.Output.Emit) != 1 || !strings.Contains(string(run.Output.Emit[0].Message), "Hello, Ada!") {
		t.Fatalf("fire = %+v", run)
	}
	run2, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if run2.Outcome != "noop" || !strings.Contains(run2.Noop, "no name given") {
		t.Fatalf("fire without name = %+v, want noop with reason", run2)
	}
	// Read both back through the API, newest first.
	runs, err := n.op.Runs(ctx, "greeter", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].ID != run2.ID || runs[1].ID != run.ID {
		t.Fatalf("runs = %+v, want [%s %s]", runs, run2.ID, run.ID)
	}
	got, err := n.op.Run(ctx, "greeter", run.ID)
	if err != nil || got.Outcome != "ok" || got.Usage.WallNS <= 0 {
		t.Fatalf("Run(%s) = %+v, %v", run.ID, got, err)
	}
	// Submitting the same archive again changes nothing.
	again, err := n.op.Submit(ctx, pack(t, example(t, "greeter")))
	if err != nil || !again.Unchanged {
		t.Fatalf("resubmit = %+v, %v; want unchanged", again, err)
	}
}

func TestStateAndCron(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	dir := example(t, "heartbeat")
	// Fire every second instead of every 15 s.
	m, _ := os.ReadFile(filepath.Join(dir, "andromeda.yaml"))
	m = bytes.Replace(m, []byte(`schedule: "*/15 * * * * *"`), []byte(`every: 1s`), 1)
	os.WriteFile(filepath.Join(dir, "andromeda.yaml"), m, 0o644)
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var runs []api.Run
	for time.Now().Before(deadline) {
		runs, _ = n.op.Runs(ctx, "heartbeat", 100)
		if len(runs) >= 5 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(runs) < 5 {
		t.Fatalf("after 20s only %d cron runs", len(runs))
	}
	// Beats count up through state: the 5th beat logs.
	var logs, noops int
	for _, r := range runs {
		switch r.Outcome {
		case "ok":
			logs++
			if r.Output.Actions[0].Kind != "log" {
				t.Errorf("run %s action = %s, want log", r.ID, r.Output.Actions[0].Kind)
			}
		case "noop":
			noops++
		default:
			t.Errorf("run %s outcome %s: %s", r.ID, r.Outcome, r.Error)
		}
		if r.Trigger.Kind != "cron" {
			t.Errorf("run %s trigger = %+v", r.ID, r.Trigger)
		}
	}
	if logs < 1 || noops < 4 {
		t.Fatalf("logs = %d, noops = %d; want every fifth beat logged", logs, noops)
	}
	svc, err := n.op.Service(ctx, "heartbeat")
	if err != nil || len(svc.Triggers) != 2 || svc.Triggers[0].Next.IsZero() || svc.Health == nil || !svc.Health.Healthy {
		t.Fatalf("inspect = %+v, %v", svc, err)
	}
}

func TestAuth(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	anon := api.NewClient(n.Addr(), "")
	if _, err := anon.Services(ctx); status(err) != 401 {
		t.Fatalf("no token: %v, want 401", err)
	}
	bad := api.NewClient(n.Addr(), "and_nope")
	if _, err := bad.Services(ctx); status(err) != 401 {
		t.Fatalf("bad token: %v, want 401", err)
	}
	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(n.Addr(), tok.Secret)
	tokB, _ := n.op.CreateToken(ctx, "bob", api.RoleSubmitter)
	bob := api.NewClient(n.Addr(), tokB.Secret)
	if _, err := alice.Submit(ctx, pack(t, example(t, "greeter"))); err != nil {
		t.Fatalf("submitter submit: %v", err)
	}
	if _, err := alice.Fire(ctx, "greeter", nil); status(err) != 403 {
		t.Fatalf("submitter fire: %v, want 403", err)
	}
	if _, err := alice.CreateToken(ctx, "eve", api.RoleOperator); status(err) != 403 {
		t.Fatalf("submitter create token: %v, want 403", err)
	}
	if err := alice.Remove(ctx, "greeter"); status(err) != 403 {
		t.Fatalf("submitter remove: %v, want 403", err)
	}
	if _, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"x"}`)); err != nil {
		t.Fatal(err)
	}
	// alice reads her runs; bob sees neither the service nor its runs.
	if runs, err := alice.Runs(ctx, "greeter", 5); err != nil || len(runs) != 1 {
		t.Fatalf("alice runs = %d, %v", len(runs), err)
	}
	if runs, err := alice.Runs(ctx, "", 5); err != nil || len(runs) != 1 {
		t.Fatalf("alice all runs = %d, %v", len(runs), err)
	}
	if list, err := bob.Services(ctx); err != nil || len(list) != 0 {
		t.Fatalf("bob services = %v, %v", list, err)
	}
	if _, err := bob.Runs(ctx, "greeter", 5); status(err) != 404 {
		t.Fatalf("bob runs of alice's service: %v, want 404", err)
	}
	if _, err := bob.Submit(ctx, pack(t, example(t, "greeter"))); status(err) != 403 {
		t.Fatalf("bob replacing alice's service: %v, want 403", err)
	}
	// Health and metrics need no token.
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.json"} {
		resp, err := http.Get(n.URL() + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s = %v, %v", p, resp, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// greeter is alice's: open metrics count it without its name.
		if p == "/metrics" && (!strings.Contains(string(body), `andromeda_invocations_total{outcome="ok",service="_submitter"} 1`) || strings.Contains(string(body), "greeter")) {
			t.Fatalf("metrics lack the invocation count, or name a submitter's service:\n%s", body)
		}
	}
}

// TestErrorKinds: the node says what kind of error it met, never an HTTP
// status; the server maps the kind (see server/errors.go).
func TestErrorKinds(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	alice := server.Principal{Name: "alice", Role: api.RoleSubmitter}
	bob := server.Principal{Name: "bob", Role: api.RoleSubmitter}
	dir := example(t, "greeter")
	if _, err := n.Submit(ctx, alice, bytes.NewReader(pack(t, dir)), api.SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "NOTES"), []byte("changed, same version\n"), 0o644)
	changed := pack(t, dir)
	_, tokenErr := n.CreateToken(ctx, "Not A Name", "root")
	var withProblems *server.Error
	if !errors.As(tokenErr, &withProblems) || len(withProblems.Problems) != 2 {
		t.Errorf("CreateToken(bad name, bad role) = %#v, want a *server.Error with two problems", tokenErr)
	}
	_, notFound := n.Fire(ctx, "nope", nil)
	_, badMessage := n.Fire(ctx, "greeter", json.RawMessage(`{"name":`))
	_, emptyBody := n.Submit(ctx, alice, bytes.NewReader(nil), api.SubmitOptions{})
	_, notYours := n.Submit(ctx, bob, bytes.NewReader(changed), api.SubmitOptions{})
	_, sameVersion := n.Submit(ctx, alice, bytes.NewReader(changed), api.SubmitOptions{})
	for _, tc := range []struct {
		name      string
		err, kind error
	}{
		{"fire an unknown service", notFound, store.ErrNotFound},
		{"fire with a message that is not JSON", badMessage, server.ErrInvalid},
		{"submit an empty body", emptyBody, server.ErrInvalid},
		{"token request with bad fields", tokenErr, server.ErrInvalid},
		{"add a malformed package", n.AddDep(ctx, alice, "greeter", " "), server.ErrInvalid},
		{"add a package to a wasm service", n.AddDep(ctx, alice, "greeter", "left-pad"), server.ErrInvalid},
		{"replace another's service", notYours, server.ErrForbidden},
		{"change a version's content", sameVersion, server.ErrConflict},
	} {
		if !errors.Is(tc.err, tc.kind) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.kind)
		}
	}
}

func status(err error) int {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// TestRestart checks that services, state and runs survive a restart, and
// that the compiled module comes from the on-disk cache.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	n := startNode(t, func(c *node.Config) { c.Data = data })
	if _, err := n.op.Submit(ctx, pack(t, example(t, "price-watch"))); err != nil {
		t.Fatal(err)
	}
	first, err := n.op.Fire(ctx, "price-watch", json.RawMessage(`{"price": 101}`))
	if err != nil || first.Outcome != "noop" {
		t.Fatalf("fire = %+v, %v", first, err)
	}
	n.Close()
	os.RemoveAll(filepath.Join(data, "services")) // unpacked dirs come back from the artifact store
	n2 := startNode(t, func(c *node.Config) { c.Data = data })
	r, err := n2.op.Fire(ctx, "price-watch", json.RawMessage(`{"price": 103}`))
	if err != nil {
		t.Fatal(err)
	}
	// price 103 vs reference 100 → 3% ≥ 2%: an http action, and state moved.
	if r.Outcome != "ok" || len(r.Output.Actions) != 1 || r.Output.Actions[0].Kind != "http" {
		t.Fatalf("after restart fire = %+v", r)
	}
	runs, err := n2.op.Runs(ctx, "price-watch", 10)
	if err != nil || len(runs) != 2 || runs[1].ID != first.ID {
		t.Fatalf("runs after restart = %+v, %v", runs, err)
	}
}

// TestConfigStrict: the config is decoded by the rules every document
// follows (package strictdoc), with the same words as the manifest's and
// the policy's, each problem at its path, the policy's under policy.
func TestConfigStrict(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		isJSON   bool
		want     string
	}{
		{"unknown key", "listen: 127.0.0.1:1\nlisten_addr: x\n", false, `listen_addr: unknown field "listen_addr"`},
		{"nested unknown", "runs:\n  per_servce: 3\n", false, `runs.per_servce: unknown field "per_servce" (did you mean "per_service"?)`},
		{"json unknown", `{"listen":"127.0.0.1:9","nope":1}`, true, `nope: unknown field "nope"`},
		{"json wrong case", `{"LISTEN":"127.0.0.1:9"}`, true, `LISTEN: unknown field "LISTEN" (did you mean "listen"?)`},
		{"json duplicate", `{"listen":"127.0.0.1:9","listen":"127.0.0.1:10"}`, true, "listen: duplicate key"},
		{"bad listen", "listen: nope\n", false, "listen: must be host:port"},
		{"null", "listen: null\n", false, "listen: must not be null"},
		{"empty section", "policy:\n", false, "policy: must not be null (an empty value is null)"},
		{"json null", "null", true, "config: must not be null"},
		{"json empty", " \n", true, "config: must not be empty"},
		{"number for a name", "name: 123\n", false, "name: must be a string (quote 123 to make it one)"},
		{"yes for a boolean", "seed_endpoint: {enabled: yes}\n", false, "seed_endpoint.enabled: must be true or false, not a string"},
		{"fraction", "upload: {max_files: 1.5}\n", false, "upload.max_files: must be an integer, not 1.5"},
		{"alias", "name: &n a\ncache: *n\n", false, "cache: YAML aliases are not supported"},
		{"two documents", "name: a\n---\nname: b\n", false, "config: must be one YAML document, found another at line 2"},
		{"json trailing", `{"name": "a"} x`, true, "config: json syntax: line 1, column 15: trailing data after the document"},
		{"bad duration", "http: {read_timeout: five}\n", false, "http.read_timeout: must be a duration like 500ms, 30s or 1h30m"},
		{"bad memory", "policy:\n  limits:\n    memory: {max: lots}\n", false, "policy.limits.memory.max: must be a size like 64Mi, 1Gi, 512k or a number of bytes"},
		{"policy unknown key", "policy:\n  limitz: 1\n", false, `policy.limitz: unknown field "limitz" (did you mean "limits"?)`},
		{"policy null", "policy:\n  network: ~\n", false, "policy.network: must not be null"},
		{"policy too deep", "policy:\n  rules: " + strings.Repeat("[", 33) + strings.Repeat("]", 33) + "\n", false, "policy.rules" + strings.Repeat("[0]", 32) + ": must not nest deeper than 33 levels"},
		{"rule does not compile", "policy:\n  rules:\n  - {name: broken, expr: 'service.nope +', message: m}\n", false, "policy.rules[0] (broken): expr does not compile"},
		{"hub key does not parse", "policy:\n  trusted_hubs:\n  - {name: a, key: 'ed25519:xx'}\n", false, "policy.trusted_hubs[0].key"},
		{"bad state cap", "state:\n  max: 1\n", false, "state.max: must be from 1024 to 67108864 bytes"},
		{"size as a list", "state:\n  max: [1]\n", false, "state.max: must be a string or a number, not a list"},
		{"bad level", "log:\n  level: loud\n", false, "log.level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := node.ParseConfig([]byte(tc.in), tc.isJSON)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("ParseConfig(%q) = %v, want %q", tc.in, err, tc.want)
			}
		})
	}
	cfg, err := node.ParseConfig([]byte("listen: 0.0.0.0:8080\n"), false)
	if err != nil || cfg.Listen != "0.0.0.0:8080" || cfg.Runs.PerService != 1000 {
		t.Fatalf("ParseConfig = %+v, %v", cfg, err)
	}
	// Sizes are a string or a number, in YAML and in JSON alike.
	for _, in := range []struct {
		data   string
		isJSON bool
	}{{"disk: {min_free: 0}\nstate: {max: 2097152}\n", false}, {`{"disk": {"min_free": 0}, "state": {"max": 2097152}}`, true}} {
		cfg, err := node.ParseConfig([]byte(in.data), in.isJSON)
		if err != nil || cfg.Disk.MinFree != "0" || cfg.State.Max != "2097152" {
			t.Errorf("ParseConfig(%q) = disk.min_free %q, state.max %q, %v; want 0 and 2097152", in.data, cfg.Disk.MinFree, cfg.State.Max, err)
		}
	}
}
