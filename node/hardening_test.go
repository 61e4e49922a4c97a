package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestDataDirLock: a second node on the same data dir is refused at start
// with an error naming the lock file and the holder's pid, and the first
// node's data is untouched; once the first stops, the dir can be used.
func TestDataDirLock(t *testing.T) {
	first := startNode(t)
	cfg := first.cfg
	cfg.Listen = "127.0.0.1:0"
	second, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = second.Start(context.Background())
	if err == nil {
		second.Close()
		t.Fatal("a second node started on a data dir in use")
	}
	lock := filepath.Join(cfg.Data, node.LockFile)
	if !errors.Is(err, node.ErrLocked) || !strings.Contains(err.Error(), lock) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second start = %v; want ErrLocked naming %s and pid %d", err, lock, os.Getpid())
	}
	if err := first.Ready(); err != nil {
		t.Fatalf("first node after the refused second: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := third.Start(context.Background()); err != nil {
		t.Fatalf("start after the first node stopped: %v", err)
	}
	third.Close()
}

// panicky is a stand-in wasm driver whose deployments panic on demand: the
// node's seam must turn any panic below it into an outcome.
type panicky struct{ sandbox.Driver }

func (panicky) Name() string                   { return "wasm" }
func (panicky) Test(ctx context.Context) error { return nil }
func (panicky) Offer() sandbox.Offer           { return sandbox.Offer{} }
func (panicky) Close() error                   { return nil }
func (panicky) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	if strings.Contains(spec.Service, "deploy-panic") {
		panic("deploy blew up")
	}
	return panickyDeployment{}, nil
}

type panickyDeployment struct{}

func (panickyDeployment) Invoke(ctx context.Context, input []byte) (sandbox.Exit, error) {
	var in struct {
		Trigger struct{ Kind string }
	}
	json.Unmarshal(input, &in)
	panic("guest path panicked on a " + in.Trigger.Kind + " run")
}
func (panickyDeployment) Stop(ctx context.Context) error { return nil }

// serviceDir writes a minimal wasm service whose manifest has the given
// triggers; its module is never run by the stand-in driver.
func serviceDir(t *testing.T, name, triggers string) string {
	t.Helper()
	dir := t.TempDir()
	m := "name: " + name + "\nversion: 1.0.0\ndescription: test\nruntime: {driver: wasm, language: wat, entry: main.wasm}\nmode: server\ntriggers:\n" + triggers +
		"resources: {memory: 16Mi, timeout: 1s, concurrency: 2}\ncapabilities: {network: none}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPanicBecomesOutcome: a panic in a driver's Invoke, on a manual fire
// and on cron ticks, is the run's outcome (crashed, with the panic
// message), recorded; a panic in Deploy refuses the submission and leaves
// no directory behind; the node stays up and ready throughout.
func TestPanicBecomesOutcome(t *testing.T) {
	ctx := context.Background()
	var tn *testNode
	{
		cfg := node.DefaultConfig()
		cfg.Data = t.TempDir()
		cfg.Listen = "127.0.0.1:0"
		cfg.Name = "panic"
		cfg.Cache = sharedCache(t)
		nd, err := node.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		node.ReplaceDriver(nd, panicky{})
		if err := nd.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		tok, _ := node.OperatorToken(cfg.Data)
		tn = &testNode{Node: nd, cfg: cfg, op: api.NewClient(nd.Addr(), tok)}
	}
	if _, err := tn.op.Submit(ctx, pack(t, serviceDir(t, "boom", "  - {kind: manual}\n  - {kind: cron, every: 1s}\n"))); err != nil {
		t.Fatal(err)
	}
	run, err := tn.op.Fire(ctx, "boom", nil)
	if err != nil {
		t.Fatalf("fire: %v", err)
	}
	if run.Outcome != "crashed" || !strings.Contains(run.Error, "guest path panicked on a manual run") {
		t.Fatalf("fire = %+v, want crashed with the panic message", run)
	}
	// A cron tick panics on the scheduler's goroutine: still an outcome.
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs, err := tn.op.Runs(ctx, "boom", 10)
		if err != nil {
			t.Fatal(err)
		}
		cron := 0
		for _, r := range runs {
			if r.Trigger.Kind == "cron" && r.Outcome == "crashed" && strings.Contains(r.Error, "panicked on a cron run") {
				cron++
			}
		}
		if cron > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no crashed cron run recorded: %+v", runs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := tn.Ready(); err != nil {
		t.Fatalf("not ready after panics: %v", err)
	}

	_, err = tn.op.Submit(ctx, pack(t, serviceDir(t, "deploy-panic", "  - {kind: manual}\n")))
	if status(err) != 422 || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("submit with a panicking deploy = %v, want 422 naming the panic", err)
	}
	if _, err := os.Stat(filepath.Join(tn.cfg.Data, "services", "deploy-panic")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused submission left its directory behind: %v", err)
	}
	if err := tn.Ready(); err != nil {
		t.Fatalf("not ready after a panicking deploy: %v", err)
	}
}

// nodeService writes a Node.js service for the process driver.
func nodeService(t testing.TB, name, resources, code string) string {
	t.Helper()
	dir := t.TempDir()
	m := "name: " + name + "\nversion: 1.0.0\ndescription: test\nruntime: {driver: process, language: node, entry: index.js}\nmode: server\ntriggers:\n  - {kind: manual}\n" +
		"resources: " + resources + "\ncapabilities: {network: none, state: true}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.js"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func requireProcess(t testing.TB, n *testNode) {
	t.Helper()
	var enabled bool
	var why string
	for _, d := range n.Node.Node(context.Background()).Drivers {
		if d.Name == "process" {
			enabled, why = d.Enabled, d.Reason
		}
	}
	sandboxtest.Require(t, enabled, "the process driver is disabled on this host: "+why)
}

// TestStateContention: eight runs of one service write the same state key
// at once; with retries on fresh state and jittered backoff, every one
// commits (none ends in error), the counter counts them all, and the runs
// that collided say how many attempts they took.
func TestStateContention(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	const writers = 8
	code := `exports.decide = async (ctx) => {
  const n = (ctx.state.n || 0) + 1;
  await new Promise((r) => setTimeout(r, 20));
  return { state: { set: { n } }, noop: 'counted ' + n };
};`
	if _, err := n.op.Submit(ctx, pack(t, nodeService(t, "counter", "{memory: 128Mi, timeout: 5s, concurrency: 8}", code))); err != nil {
		t.Fatal(err)
	}
	// One warm-up run, so the eight below start together on a ready worker.
	if r, err := n.op.Fire(ctx, "counter", nil); err != nil || r.Outcome != "noop" {
		t.Fatalf("warm-up = %+v, %v", r, err)
	}
	var wg sync.WaitGroup
	runs := make([]api.Run, writers)
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i], errs[i] = n.op.Fire(ctx, "counter", nil)
		}()
	}
	wg.Wait()
	retried := 0
	for i, r := range runs {
		if errs[i] != nil || r.Outcome != "noop" {
			t.Errorf("writer %d = %+v, %v; want every writer to commit", i, r, errs[i])
		}
		if r.Attempts > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no run needed a second attempt: the writers did not contend")
	}
	last, err := n.op.Fire(ctx, "counter", nil)
	if err != nil || last.Noop != "counted "+strconv.Itoa(writers+2) {
		t.Fatalf("after %d writers = %+v, %v; want counted %d", writers, last, err, writers+2)
	}
}

// TestFireOverConcurrencyBound: a manual fire over resources.concurrency
// answers 429 with Retry-After, and its run is recorded as skipped.
func TestFireOverConcurrencyBound(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	code := `exports.decide = async (ctx) => {
  await new Promise((r) => setTimeout(r, (ctx.message && ctx.message.ms) || 0));
  return { noop: 'slept' };
};`
	if _, err := n.op.Submit(ctx, pack(t, nodeService(t, "sleeper", "{memory: 128Mi, timeout: 10s, concurrency: 1}", code))); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Fire(ctx, "sleeper", nil); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		// Until it gets the slot (a probe below may hold it a moment).
		for {
			_, err := n.op.Fire(ctx, "sleeper", json.RawMessage(`{"ms": 5000}`))
			if status(err) != http.StatusTooManyRequests {
				slow <- err
				return
			}
		}
	}()
	// Probe until the slow run holds the one slot: the probe is refused.
	var resp *http.Response
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("POST", n.URL()+"/v1/services/sleeper/fire", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+n.token(t))
		var err error
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || time.Now().After(deadline) {
			break
		}
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	defer resp.Body.Close()
	var body api.Error
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || body.Run == nil || body.Run.Outcome != "skipped" {
		t.Fatalf("fire over the bound = %d, Retry-After %q, body %+v; want 429 with Retry-After and the skipped run", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	got, err := n.op.Run(ctx, "sleeper", body.Run.ID)
	if err != nil || got.Outcome != "skipped" || !strings.Contains(got.Noop, "concurrency") {
		t.Fatalf("the skipped run as recorded = %+v, %v", got, err)
	}
}

func (n *testNode) token(t *testing.T) string {
	tok, err := node.OperatorToken(n.cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// countingWriter counts the bytes written to it.
type countingWriter struct {
	mu sync.Mutex
	n  int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.n += int64(len(p))
	w.mu.Unlock()
	return len(p), nil
}

func (w *countingWriter) bytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// TestGuestLogFlood: a service that writes 200 MB to stderr and its log in
// one run grows the node's own log by at most 1 MiB; the run still ends
// with an outcome and the node stays ready.
func TestGuestLogFlood(t *testing.T) {
	ctx := context.Background()
	var logged countingWriter
	cfg := node.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Name = "flood"
	cfg.Cache = sharedCache(t)
	nd, err := node.New(cfg, slog.New(slog.NewJSONHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close() })
	tok, _ := node.OperatorToken(cfg.Data)
	n := &testNode{Node: nd, cfg: cfg, op: api.NewClient(nd.Addr(), tok)}
	requireProcess(t, n)
	code := `exports.decide = async (ctx) => {
  const line = 'x'.repeat(1023) + '\n';
  const chunk = line.repeat(1024); // 1 MiB
  for (let i = 0; i < 200; i++) process.stderr.write(chunk);
  for (let i = 0; i < 20000; i++) console.log('log line ' + i);
  return { noop: 'flooded' };
};`
	if _, err := n.op.Submit(ctx, pack(t, nodeService(t, "flood", "{memory: 256Mi, timeout: 60s}", code))); err != nil {
		t.Fatal(err)
	}
	before := logged.bytes()
	run, err := n.op.Fire(ctx, "flood", nil)
	if err != nil {
		t.Fatal(err)
	}
	if run.Outcome != "noop" {
		t.Fatalf("flood run = %+v, want its noop", run)
	}
	grew := logged.bytes() - before
	t.Logf("200 MB of guest output grew the node's log by %d bytes", grew)
	if grew > 1<<20 {
		t.Fatalf("the node's log grew by %d bytes, more than 1 MiB", grew)
	}
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
}

// TestReadyzReportsStore: /readyz answers what the store found at start,
// per stream, beside the verdict.
func TestReadyzReportsStore(t *testing.T) {
	n := startNode(t)
	resp, err := http.Get(n.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rd api.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !rd.Ready || !strings.Contains(string(rd.Store), `"ANDROMEDA_RUNS"`) || len(rd.Problems) != 0 {
		t.Fatalf("/readyz = %d %+v (store %s); want ready with a per-stream report", resp.StatusCode, rd, rd.Store)
	}
}

// TestReadmeConfig keeps the README's config block (every key with its
// default) valid and equal to the defaults.
func TestReadmeConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "```yaml\nlisten: 127.0.0.1:7070")
	if start < 0 {
		t.Fatal("README has no config block starting with listen:")
	}
	block := text[start+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]
	// The placeholders are for people; the rest parses as it stands.
	block = strings.Replace(block, "data: ~/.local/share/andromeda", "data: /tmp/x", 1)
	block = strings.Replace(block, "name: <host name>", "name: host", 1)
	cfg, err := node.ParseConfig([]byte(block), false)
	if err != nil {
		t.Fatalf("the README's config block: %v", err)
	}
	def := node.DefaultConfig()
	if cfg.HTTP != def.HTTP || cfg.Disk != def.Disk || cfg.State != def.State || cfg.Deps != def.Deps || cfg.Runs != def.Runs {
		t.Fatalf("the README's config block differs from the defaults:\n%+v\n%+v", cfg, def)
	}
}

// TestStateSlowWriterGetsItsTurn: a slow run that keeps losing the
// compare-and-swap to a stream of fast writers of the same state is not
// starved: after a few conflicts it writes under the service's lock, and
// every run commits.
func TestStateSlowWriterGetsItsTurn(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	code := `exports.decide = async (ctx) => {
  const n = (ctx.state.n || 0) + 1;
  await new Promise((r) => setTimeout(r, (ctx.message && ctx.message.ms) || 0));
  return { state: { set: { n } }, noop: 'counted ' + n };
};`
	if _, err := n.op.Submit(ctx, pack(t, nodeService(t, "contended", "{memory: 128Mi, timeout: 30s, concurrency: 8}", code))); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Fire(ctx, "contended", nil); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var fast sync.WaitGroup
	var fastRuns, fastFailed atomic.Int64
	for range 3 {
		fast.Add(1)
		go func() {
			defer fast.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := n.op.Fire(ctx, "contended", nil)
				fastRuns.Add(1)
				if err != nil || r.Outcome != "noop" {
					fastFailed.Add(1)
				}
			}
		}()
	}
	for i := range 3 {
		r, err := n.op.Fire(ctx, "contended", json.RawMessage(`{"ms": 150}`))
		if err != nil || r.Outcome != "noop" {
			t.Errorf("slow writer %d = %+v, %v; want it to commit", i, r, err)
		}
		t.Logf("slow writer %d committed after %d attempts", i, r.Attempts)
	}
	close(stop)
	fast.Wait()
	if fastFailed.Load() != 0 {
		t.Errorf("%d of %d fast writers failed", fastFailed.Load(), fastRuns.Load())
	}
	t.Logf("%d fast runs meanwhile", fastRuns.Load())
}

// TestNetworkedProcessService: a process service asking for network is
// admitted (the driver says it can grant it) and its worker has the
// host's network; a wasm service asking for it is refused with the
// reason, since the wasm driver grants none.
func TestNetworkedProcessService(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	dir := nodeService(t, "netty", "{memory: 128Mi, timeout: 5s}", `exports.decide = async () => {
  const os = require('os');
  return { noop: 'interfaces ' + Object.keys(os.networkInterfaces()).length };
};`)
	m, _ := os.ReadFile(filepath.Join(dir, "andromeda.yaml"))
	os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(strings.Replace(string(m), "network: none", "network: any", 1)), 0o644)
	res, err := n.op.Submit(ctx, pack(t, dir))
	if err != nil {
		t.Fatalf("a process service with network: any: %v", err)
	}
	if res.Service.Decision.Network != "any" {
		t.Fatalf("decision = %+v, want network any granted", res.Service.Decision)
	}
	r, err := n.op.Fire(ctx, "netty", nil)
	if err != nil || r.Outcome != "noop" || r.Noop == "interfaces 1" {
		t.Fatalf("fire = %+v, %v; want the host's interfaces (more than lo)", r, err)
	}

	wdir := serviceDir(t, "netwasm", "  - {kind: manual}\n")
	m, _ = os.ReadFile(filepath.Join(wdir, "andromeda.yaml"))
	m = []byte(strings.Replace(string(m), "language: wat", "language: go", 1))
	os.WriteFile(filepath.Join(wdir, "andromeda.yaml"), []byte(strings.Replace(string(m), "network: none", "network: any", 1)), 0o644)
	_, err = n.op.Submit(ctx, pack(t, wdir))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Decision == nil {
		t.Fatalf("a wasm service with network: any = %v; want 422 with the decision", err)
	}
	if why, _ := json.Marshal(ae.Decision); !strings.Contains(string(why), "cannot grant network") {
		t.Fatalf("decision %s; want it to say the driver cannot grant network", why)
	}
}

// TestReservedTokenNames: a token cannot be named after the operator or the
// anonymous submitter, whose names own services.
func TestReservedTokenNames(t *testing.T) {
	n := startNode(t)
	for _, name := range []string{"operator", "anonymous"} {
		if _, err := n.op.CreateToken(context.Background(), name, api.RoleSubmitter); status(err) != 400 || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("token named %s: %v; want 400, reserved", name, err)
		}
	}
}
