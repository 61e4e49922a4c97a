//go:build linux

package crashtest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/envelope"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// vaultEndpoint is the test's receiving side of the node's executions: it
// honours Idempotency-Key (a request whose key it has taken is answered
// as before and not taken again), verifies every envelope's signature,
// and keeps what it took by run.
type vaultEndpoint struct {
	*httptest.Server
	pub ed25519.PublicKey

	mu        sync.Mutex
	taken     map[string]bool     // idempotency keys taken
	envelopes map[string][]string // run id → keys of the envelopes taken for it
	hooks     map[string][]string // run id → keys of the http actions taken for it
	resent    int                 // requests with a key already taken
	bad       []string            // envelopes that did not verify
	requests  atomic.Int64
}

func newVaultEndpoint(t *testing.T) *vaultEndpoint {
	v := &vaultEndpoint{taken: map[string]bool{}, envelopes: map[string][]string{}, hooks: map[string][]string{}}
	v.Server = httptest.NewServer(http.HandlerFunc(v.serve))
	t.Cleanup(v.Close)
	return v
}

func (v *vaultEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	v.requests.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	// A little latency keeps executions in flight, where kills land.
	time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
	key := r.Header.Get("Idempotency-Key")
	v.mu.Lock()
	defer v.mu.Unlock()
	if key == "" {
		v.bad = append(v.bad, r.URL.Path+": no Idempotency-Key")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if v.taken[key] {
		v.resent++
		io.WriteString(w, `{"taken": "before"}`)
		return
	}
	switch r.URL.Path {
	case "/vault":
		env, err := envelope.VerifyFrom(body, v.pub)
		if err != nil {
			v.bad = append(v.bad, err.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if len(env.Actions) != 2 {
			v.bad = append(v.bad, fmt.Sprintf("run %s: envelope with %d actions, want 2", env.RunID, len(env.Actions)))
		}
		v.envelopes[env.RunID] = append(v.envelopes[env.RunID], key)
	case "/hook":
		var b struct {
			Run string `json:"run"`
		}
		json.Unmarshal(body, &b)
		v.hooks[b.Run] = append(v.hooks[b.Run], key)
	}
	v.taken[key] = true
	io.WriteString(w, `{"taken": "now"}`)
}

// actNode starts `andromeda serve` with the vault target's envelopes going
// to v, a key for vault, a NATS credential for publisher "ticks", and the
// act-node service (Node.js: cron every second, an event trigger on
// ticks.act and manual; two submits and one http action per run).
type actNode struct {
	*killNode
	token string
	c     *api.Client
	creds api.NATSUser
	v     *vaultEndpoint
}

func startActNode(t *testing.T, v *vaultEndpoint) *actNode {
	t.Helper()
	sandboxtest.Require(t, os.Geteuid() == 0, "the process driver needs root")
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build andromeda")
	_, err = exec.LookPath("node")
	sandboxtest.Require(t, err == nil, "node is needed for the Node.js plugin")
	ctx := context.Background()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "andromeda")
	if out, err := exec.Command("go", "build", "-o", bin, andromedaCmd).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(tmp, "data")
	n := &killNode{t: t, bin: bin, logPath: filepath.Join(tmp, "node.log"), config: filepath.Join(tmp, "andromeda.yaml")}
	n.addr, n.natsAddr = testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := fmt.Sprintf(`listen: %s
data: %s
nats: {listen: %s}
runs: {per_service: %d}
log: {format: json, level: info}
executors:
  targets: {vault: {endpoint: %s/vault}}
  http: {allow_private: true}
  backoff: 50ms
  backoff_max: 1s
`, n.addr, data, n.natsAddr, killRunsPerService, v.URL)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanup)
	if _, err := n.start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	token, err := node.OperatorToken(data)
	if err != nil {
		t.Fatal(err)
	}
	a := &actNode{killNode: n, token: token, c: api.NewClient(n.addr, token), v: v}
	key, err := a.c.CreateKey(ctx, "vault")
	if err != nil {
		t.Fatal(err)
	}
	if len(key.PublicKey) != ed25519.PublicKeySize {
		t.Fatalf("public key %x", key.PublicKey)
	}
	v.pub = key.PublicKey
	if a.creds, err = a.c.CreateNATSUser(ctx, "ticker", "ticks"); err != nil {
		t.Fatal(err)
	}
	svc := filepath.Join(tmp, "act-node")
	testutil.CopyDir(t, filepath.Join("testdata", "act"), svc)
	host := strings.TrimPrefix(v.URL, "http://")
	m, err := os.ReadFile(filepath.Join(svc, "andromeda.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m = []byte(strings.ReplaceAll(string(m), "VAULT", host))
	if err := os.WriteFile(filepath.Join(svc, "andromeda.yaml"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := archive.Pack(svc)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.c.Submit(ctx, b)
	if err == nil && res.Service.Status != "deployed" {
		err = fmt.Errorf("status %s: %s", res.Service.Status, res.Service.StatusDetail)
	}
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return a
}

// publisher connects to the node's NATS as the ticks credential, from this
// process, as any NATS client would.
func (a *actNode) publisher(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("nats://"+a.natsAddr, nats.UserInfo(a.creds.Name, a.creds.Secret), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.IgnoreAuthErrorAbort(),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// publish stores one event on ticks.act and waits for JetStream's
// acknowledgement.
func publish(nc *nats.Conn, msg string) error {
	reply, err := nc.Request("andromeda.events.ticks.act", []byte(msg), 5*time.Second)
	if err != nil {
		return err
	}
	var ack struct {
		Seq   uint64 `json:"seq"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &ack); err != nil || ack.Error != nil || ack.Seq == 0 {
		return fmt.Errorf("publish: %s", reply.Data)
	}
	return nil
}

// settle waits until every ok run of act-node that started before cutoff
// has each of its executions ended, then checks what the endpoint took
// against the runs: each such run's envelope (both submits) and http
// action taken exactly once, every execution confirmed, and nothing taken
// for a run the node did not record. It returns the runs before cutoff.
func (a *actNode) settle(t *testing.T, cutoff time.Time, timeout time.Duration) map[string]api.Run {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	done := map[string]api.Run{} // before cutoff, settled
	for {
		var open []string
		for _, r := range a.listRuns(t) {
			if _, ok := done[r.ID]; ok || !r.Start.Before(cutoff) {
				continue
			}
			if r.Outcome != "ok" {
				done[r.ID] = r
				continue
			}
			full, err := a.c.Run(ctx, "act-node", r.ID)
			if err != nil {
				t.Fatal(err)
			}
			settled := len(full.Executions) == 2
			for _, e := range full.Executions {
				if e.State != "confirmed" && e.State != "failed" {
					settled = false
					open = append(open, fmt.Sprintf("%s: %s %s (%d attempts, %s)", r.ID, e.Kind, e.State, e.Attempts, e.Error))
				}
			}
			if len(full.Executions) != 2 {
				open = append(open, fmt.Sprintf("%s: %d executions, want 2", r.ID, len(full.Executions)))
			}
			if settled {
				done[r.ID] = full
			}
		}
		if len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("executions still open after %s: %d, e.g. %v", timeout, len(open), open[:min(5, len(open))])
		}
		time.Sleep(200 * time.Millisecond)
	}
	// What the endpoint took, then every run recorded: an execution
	// starts only after its run is recorded, so each run the endpoint
	// took something of is in the listing.
	a.v.mu.Lock()
	bad := slices.Clone(a.v.bad)
	envelopes, hooks := maps.Clone(a.v.envelopes), maps.Clone(a.v.hooks)
	a.v.mu.Unlock()
	all := map[string]bool{}
	for _, r := range a.listRuns(t) {
		all[r.ID] = r.Outcome == "ok"
	}
	for _, b := range bad {
		t.Errorf("the endpoint refused a request: %s", b)
	}
	for id, r := range done {
		if r.Outcome != "ok" {
			if len(envelopes[id])+len(hooks[id]) > 0 {
				t.Errorf("run %s ended %s (%s) but the endpoint took something of it", id, r.Outcome, r.Error)
			}
			continue
		}
		for _, e := range r.Executions {
			if e.State != "confirmed" {
				t.Errorf("run %s: %s execution %s (%s); want confirmed", id, e.Kind, e.State, e.Error)
			}
		}
		if n := len(envelopes[id]); n != 1 {
			t.Errorf("run %s: the endpoint took %d envelopes; want exactly 1", id, n)
		}
		if n := len(hooks[id]); n != 1 {
			t.Errorf("run %s: the endpoint took its http action %d times; want exactly 1", id, n)
		}
	}
	for _, taken := range []map[string][]string{envelopes, hooks} {
		for id := range taken {
			if ok, recorded := all[id]; !recorded || !ok {
				t.Errorf("the endpoint took an execution of run %s, which the node did not record as ok (recorded: %v)", id, recorded)
			}
		}
	}
	return done
}

// listRuns lists every run of act-node.
func (a *actNode) listRuns(t *testing.T) []api.Run {
	t.Helper()
	var out []api.Run
	q := api.RunQuery{Limit: 1000}
	for {
		l, err := a.c.ListRuns(context.Background(), "act-node", q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Runs...)
		if l.Next == "" {
			return out
		}
		q.Cursor = l.Next
	}
}

func okRuns(runs map[string]api.Run) int {
	n := 0
	for _, r := range runs {
		if r.Outcome == "ok" {
			n++
		}
	}
	return n
}

// TestActEndToEnd is the act-and-react criterion end to end, with real
// parts: a Node.js plugin fires on a cron tick and on an event a NATS
// client of this process publishes with a node-issued credential, reads
// its state, and returns two submit actions and one http action; the
// endpoint gets exactly one envelope per run holding both submits, signed
// with the node's vault key, and the http action once; an http action to a
// host outside the grant ends the run rejected and sends nothing.
func TestActEndToEnd(t *testing.T) {
	v := newVaultEndpoint(t)
	a := startActNode(t, v)
	ctx := context.Background()
	nc := a.publisher(t)
	if err := publish(nc, `{"from": "nats"}`); err != nil {
		t.Fatal(err)
	}
	// Wait for a cron run and the event's run.
	deadline := time.Now().Add(20 * time.Second)
	var cron, event bool
	for !(cron && event) {
		runs, err := a.c.Runs(ctx, "act-node", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			switch {
			case r.Outcome != "ok":
				t.Fatalf("run %s ended %s: %s", r.ID, r.Outcome, r.Error)
			case r.Trigger.Kind == "cron":
				cron = true
			case r.Trigger.Kind == "event":
				event = true
				if !strings.HasPrefix(r.Trigger.Publisher, "nats") {
					t.Errorf("the event's run names publisher %q; want the NATS client", r.Trigger.Publisher)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cron run (%v) or event run (%v) within 20 s", cron, event)
		}
		time.Sleep(100 * time.Millisecond)
	}
	bad, err := a.c.Fire(ctx, "act-node", json.RawMessage(`{"url": "http://127.0.0.1:9/elsewhere"}`))
	if err != nil || bad.Outcome != "rejected" || !strings.Contains(bad.Error, "capabilities.network") {
		t.Fatalf("an http action outside the grant = %+v, %v; want rejected", bad, err)
	}
	runs := a.settle(t, time.Now(), 30*time.Second)
	ok := okRuns(runs)
	if ok < 2 {
		t.Fatalf("%d ok runs; want a cron run and an event run at least", ok)
	}
	t.Logf("%d runs, %d ok; the endpoint took %d envelopes, saw %d requests, %d of them resent under a key it had taken", len(runs), ok, len(v.envelopes), v.requests.Load(), v.resent)
}

// TestActKill is exactly-once under faults: the node is SIGKILLed at
// random moments while fires, cron and NATS events keep act-node's
// executions in flight, 6 times (100 with ANDROMEDA_SOAK=1, 3 with
// -short). At the end every run the node recorded (every acknowledged
// fire among them) has its executions confirmed, the endpoint, honouring
// Idempotency-Key, took each run's envelope and http action exactly once,
// and took nothing of a run the node never recorded.
func TestActKill(t *testing.T) {
	kills := 6
	if os.Getenv("ANDROMEDA_SOAK") == "1" {
		kills = 100
	} else if testing.Short() {
		kills = 3
	}
	v := newVaultEndpoint(t)
	a := startActNode(t, v)
	ctx := context.Background()
	nc := a.publisher(t)
	acked := map[string]bool{}
	var fires, events, eventsAcked int
	var readies []time.Duration
	for i := 1; i <= kills; i++ {
		c := api.NewClient(a.addr, a.token)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					r, err := c.Fire(fctx, "act-node", nil)
					cancel()
					mu.Lock()
					fires++
					if err == nil && r.Outcome == "ok" {
						acked[r.ID] = true
					}
					mu.Unlock()
					if err != nil {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(30 * time.Millisecond):
				}
				err := publish(nc, `{"from": "nats"}`)
				mu.Lock()
				events++
				if err == nil {
					eventsAcked++
				}
				mu.Unlock()
			}
		}()
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		a.kill()
		close(stop)
		wg.Wait()
		took, err := a.start()
		if err != nil {
			t.Fatalf("kill %d: not ready again: %v", i, err)
		}
		readies = append(readies, took)
	}
	// Runs started before now (events published before the last kill
	// among them, as they drain) must settle; cron goes on meanwhile.
	runs := a.settle(t, time.Now(), 180*time.Second)
	for id := range acked {
		if r, ok := runs[id]; !ok || r.Outcome != "ok" {
			t.Errorf("run %s was answered ok but is recorded as %q", id, r.Outcome)
		}
	}
	ok := okRuns(runs)
	var attempts, execs int
	for _, r := range runs {
		for _, e := range r.Executions {
			execs++
			attempts += e.Attempts
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	t.Logf("kills %d; fires %d (%d acknowledged ok); events published %d (%d acknowledged); runs %d, %d ok; executions %d, attempts %d; the endpoint saw %d requests, %d resent under a key it had taken; ready again after %s",
		kills, fires, len(acked), events, eventsAcked, len(runs), ok, execs, attempts, v.requests.Load(), v.resent, percentiles(readies))
	if ok == 0 {
		t.Fatal("no ok runs: the test proved nothing")
	}
}
