package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/envelope"
	"github.com/andromeda-runner/andromeda/keys"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/store"
)

// receiver is an HTTP endpoint that honours Idempotency-Key: a request
// with a key it has seen is answered as before and not counted again.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   map[string][]string // path → bodies taken, in order
	keys     map[string]int      // idempotency key → requests that carried it
	fail     map[string]int      // path → how many more requests answer 503
	status   map[string]int      // path → the status every request answers (default 200)
	block    chan struct{}       // when set, requests wait on it
	received chan struct{}       // a request arrived
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{bodies: map[string][]string{}, keys: map[string]int{}, fail: map[string]int{}, status: map[string]int{}, received: make(chan struct{}, 64)}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	select {
	case r.received <- struct{}{}:
	default:
	}
	r.mu.Lock()
	block := r.block
	r.mu.Unlock()
	if block != nil {
		<-block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := req.Header.Get("Idempotency-Key")
	r.keys[key]++
	if r.fail[req.URL.Path] > 0 {
		r.fail[req.URL.Path]--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if st := r.status[req.URL.Path]; st != 0 {
		w.WriteHeader(st)
		io.WriteString(w, "no such account")
		return
	}
	if key == "" || r.keys[key] == 1 || !r.seen(req.URL.Path, key) {
		r.bodies[req.URL.Path] = append(r.bodies[req.URL.Path], string(body))
		r.markSeen(req.URL.Path, key)
	}
	io.WriteString(w, `{"accepted": true}`)
}

// seen and markSeen remember which keys a path took, so a retry after a
// 503 is still taken once.
func (r *receiver) seen(path, key string) bool { return r.keys["taken "+path+" "+key] > 0 }
func (r *receiver) markSeen(path, key string) {
	if key != "" {
		r.keys["taken "+path+" "+key]++
	}
}

func (r *receiver) taken(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies[path]...)
}

func (r *receiver) hostPort() string { return strings.TrimPrefix(r.URL, "http://") }

// executorNode starts a node whose vault target's envelopes go to rcv's
// /vault, with a key for vault, and submits the mirror service with
// target vault and rcv as its one network host.
func executorNode(t *testing.T, rcv *receiver, mutate ...func(*node.Config)) (*testNode, keys.Info) {
	t.Helper()
	n := startNodeWith(t, realWasm(t), append([]func(*node.Config){func(c *node.Config) {
		c.Executors.Targets = map[string]node.TargetConfig{"vault": {Endpoint: rcv.URL + "/vault"}}
		c.Executors.HTTP.AllowPrivate = true // the receiver is on loopback
		c.Executors.Backoff, c.Executors.BackoffMax = "10ms", "50ms"
	}}, mutate...)...)
	ring, err := keys.Open(filepath.Join(n.cfg.Data, node.KeysDir))
	if err != nil {
		t.Fatal(err)
	}
	info, err := ring.Create("vault")
	if err != nil {
		t.Fatal(err)
	}
	svc := mirrorService(t, "target: vault-7", "target: vault", `network: ["api.example:443"]`, `network: ["`+rcv.hostPort()+`"]`,
		"actions: [submit, http]", "actions: [submit, http, log, emit]")
	if _, err := n.op.Submit(context.Background(), pack(t, svc)); err != nil {
		t.Fatal(err)
	}
	return n, info
}

// settled waits until every execution of run id has ended and returns
// the run with them.
func settled(t *testing.T, n *testNode, id string, want ...int) api.Run {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := n.op.Run(context.Background(), "mirror", id)
		if err != nil {
			t.Fatal(err)
		}
		// With want, as many executions as that must be listed: a listing
		// read just after the run was recorded once lacked the last one
		// (CI), so every one present being done is not enough.
		done := len(r.Executions) > 0 && (len(want) == 0 || len(r.Executions) >= want[0])
		for _, e := range r.Executions {
			done = done && (e.State == "confirmed" || e.State == "failed")
		}
		if done {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("executions of run %s did not end: %+v", id, r.Executions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExecutions: an ok run's two submits become one envelope, signed
// with the node's key for the target, POSTed once; its http action
// reaches its granted host once, with the execution's idempotency key;
// its log and emit actions take effect. Each execution is on the run.
func TestExecutions(t *testing.T) {
	rcv := newReceiver(t)
	n, key := executorNode(t, rcv)
	run := mirror(t, n, `{"actions": [
		{"kind": "submit", "params": {"amount": 5, "to": "alice"}},
		{"kind": "http", "params": {"method": "POST", "url": "`+rcv.URL+`/hook", "headers": {"X-Run": "1"}, "body": {"a": 1}}},
		{"kind": "submit", "params": {"to": "bob", "amount": 7, "target": "vault"}},
		{"kind": "log", "params": {"message": "moved", "fields": {"n": 2}}},
		{"kind": "emit", "params": {"topic": "moved", "message": {"n": 2}}}]}`)
	if run.Outcome != "ok" {
		t.Fatalf("run = %s %s", run.Outcome, run.Error)
	}
	r := settled(t, n, run.ID, 4)
	if len(r.Executions) != 4 {
		t.Fatalf("executions = %+v; want 4 (one envelope for both submits)", r.Executions)
	}
	for _, e := range r.Executions {
		if e.State != "confirmed" || e.Attempts != 1 || e.Key == "" || !strings.HasPrefix(e.Digest, "sha256:") {
			t.Errorf("execution %+v; want confirmed at the first attempt, with a key and a digest", e)
		}
	}
	sub := r.Executions[0]
	if sub.Kind != "submit" || len(sub.Actions) != 2 || sub.Actions[0] != 0 || sub.Actions[1] != 2 || sub.Status != 200 {
		t.Fatalf("submit execution = %+v", sub)
	}
	envs := rcv.taken("/vault")
	if len(envs) != 1 {
		t.Fatalf("vault got %d envelopes; want 1", len(envs))
	}
	env, err := envelope.VerifyFrom([]byte(envs[0]), key.Public)
	if err != nil {
		t.Fatalf("envelope does not verify with the vault key's public half: %v", err)
	}
	if env.Service != "mirror" || env.RunID != run.ID || env.Target != "vault" || len(env.Actions) != 2 ||
		string(env.Actions[0]) != `{"amount":5,"to":"alice"}` || string(env.Actions[1]) != `{"amount":7,"target":"vault","to":"bob"}` {
		t.Fatalf("envelope = %+v", env)
	}
	if sub.Envelope != envs[0] || sub.Digest != envelope.Digest(mustCanonical(t, env)) {
		t.Errorf("the run's submit execution does not show the envelope sent and its digest")
	}
	hooks := rcv.taken("/hook")
	if len(hooks) != 1 || hooks[0] != `{"a":1}` {
		t.Fatalf("hook got %q; want one {\"a\":1}", hooks)
	}
	rcv.mu.Lock()
	hits := rcv.keys[r.Executions[1].Key]
	rcv.mu.Unlock()
	if hits != 1 {
		t.Errorf("the http action's idempotency key reached the endpoint %d times; want 1", hits)
	}
	if r.Executions[3].Kind != "emit" || r.Executions[3].Sequence == 0 {
		t.Errorf("emit execution = %+v; want the event's sequence", r.Executions[3])
	}
}

func mustCanonical(t *testing.T, e envelope.Envelope) []byte {
	t.Helper()
	b, err := envelope.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExecutionRejected: an http action to a host outside the grant and a
// submit to another target end the run rejected, naming the rule, and
// nothing of the run is sent.
func TestExecutionRejected(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := executorNode(t, rcv)
	r := mirror(t, n, `{"actions": [{"kind": "submit", "params": {"amount": 1}},
		{"kind": "http", "params": {"method": "GET", "url": "http://127.0.0.1:1/elsewhere"}}]}`)
	wantRejected(t, n, r, `actions[1].params.url: 127.0.0.1:1 is not among the hosts the service's manifest grants (capabilities.network: `+rcv.hostPort()+`)`)
	r = mirror(t, n, `{"actions": [{"kind": "submit", "params": {"amount": 1, "target": "other"}}]}`)
	wantRejected(t, n, r, `actions[0].params.target: "other" is not this service's target "vault": a service submits only to the target it was admitted for`)
	r = mirror(t, n, `{"actions": [{"kind": "transfer", "params": {}}]}`)
	if r.Outcome != "rejected" {
		t.Errorf("an undeclared kind = %s", r.Outcome)
	}
	time.Sleep(100 * time.Millisecond) // nothing is queued; give a wrong executor the chance to show itself
	if got := len(rcv.taken("/vault")) + len(rcv.taken("/elsewhere")); got != 0 {
		t.Fatalf("rejected runs sent %d requests", got)
	}
	if got, _ := n.op.Run(context.Background(), "mirror", r.ID); len(got.Executions) != 0 {
		t.Fatalf("a rejected run has executions: %+v", got.Executions)
	}
}

// TestExecutionRetries: transient failures (503) are retried under the
// same key until the endpoint takes the request; a 4xx fails at once,
// with the answer on the run; a private address the config does not allow
// fails without being dialled.
func TestExecutionRetries(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := executorNode(t, rcv)
	rcv.mu.Lock()
	rcv.fail["/flaky"] = 2
	rcv.status["/gone"] = http.StatusNotFound
	rcv.mu.Unlock()
	r := settled(t, n, mirror(t, n, `{"actions": [
		{"kind": "http", "params": {"method": "PUT", "url": "`+rcv.URL+`/flaky", "body": "x"}},
		{"kind": "http", "params": {"method": "PUT", "url": "`+rcv.URL+`/gone", "body": "x"}}]}`).ID, 2)
	flaky, gone := r.Executions[0], r.Executions[1]
	if flaky.State != "confirmed" || flaky.Attempts != 3 || len(rcv.taken("/flaky")) != 1 {
		t.Errorf("flaky = %+v, taken %d; want confirmed at the third attempt, taken once", flaky, len(rcv.taken("/flaky")))
	}
	rcv.mu.Lock()
	if k := rcv.keys[flaky.Key]; k != 3 {
		t.Errorf("the flaky endpoint saw the execution's key %d times; want 3 (one key for every attempt)", k)
	}
	rcv.mu.Unlock()
	if gone.State != "failed" || gone.Attempts != 1 || gone.Status != 404 || gone.Response != "no such account" || !strings.Contains(gone.Error, "404") {
		t.Errorf("gone = %+v; want failed at the first attempt with the 404 and its body", gone)
	}

	// Without allow_private, the loopback receiver is refused at dial time.
	rcv2 := newReceiver(t)
	n2, _ := executorNode(t, rcv2, func(c *node.Config) { c.Executors.HTTP.AllowPrivate = false })
	r = settled(t, n2, mirror(t, n2, `{"actions": [{"kind": "http", "params": {"method": "GET", "url": "`+rcv2.URL+`/x"}}]}`).ID)
	if e := r.Executions[0]; e.State != "failed" || e.Attempts != 1 || !strings.Contains(e.Error, "allow_private") {
		t.Errorf("private address = %+v; want failed, refused, once", e)
	}
	if len(rcv2.taken("/x")) != 0 {
		t.Errorf("a refused address was reached")
	}
}

// TestExecutionEndRecordFails: an execution done whose end the store
// refuses twice is recorded at the third write, and not sent again: the
// endpoint takes it once.
func TestExecutionEndRecordFails(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := executorNode(t, rcv)
	var mu sync.Mutex
	refused, sent := 0, 0
	node.ExecutionHook(n.Node, func(stage string, e store.Execution) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stage == "send":
			sent++
		case stage == "end" && refused < 2:
			refused++
			return errors.New("nats: no response from stream")
		}
		return nil
	})
	r := settled(t, n, mirror(t, n, `{"actions": [{"kind": "http", "params": {"method": "PUT", "url": "`+rcv.URL+`/once", "body": "x"}}]}`).ID)
	mu.Lock()
	defer mu.Unlock()
	if e := r.Executions[0]; e.State != "confirmed" || e.Attempts != 1 || refused != 2 || sent != 1 || len(rcv.taken("/once")) != 1 {
		t.Errorf("execution %+v, its end refused %d times, sent %d times, taken %d times; want confirmed once, its end written at the third try", e, refused, sent, len(rcv.taken("/once")))
	}
}

// TestExecutionOwnListener: no execution reaches the node's own API,
// whatever the grant and allow_private say.
func TestExecutionOwnListener(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := executorNode(t, rcv)
	_, port, _ := net.SplitHostPort(n.Addr())
	svc := mirrorService(t, "name: mirror", "name: mirror2", `network: ["api.example:443"]`, `network: ["127.0.0.1:`+port+`"]`,
		"actions: [submit, http]", "actions: [http]")
	if _, err := n.op.Submit(context.Background(), pack(t, svc)); err != nil {
		t.Fatal(err)
	}
	run, err := n.op.Fire(context.Background(), "mirror2", json.RawMessage(`{"actions": [{"kind": "http", "params": {"method": "GET", "url": "http://127.0.0.1:`+port+`/v1/node"}}]}`))
	if err != nil || run.Outcome != "ok" {
		t.Fatalf("fire = %+v, %v", run, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := n.op.Run(context.Background(), "mirror2", run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Executions) == 1 && r.Executions[0].State == "failed" {
			if !strings.Contains(r.Executions[0].Error, "own listeners") {
				t.Fatalf("error = %s", r.Executions[0].Error)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("executions = %+v; want failed: the node's own listener", r.Executions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExecutionResumes: a node stopped while an execution's request is at
// the endpoint resumes it at start under the same key, and the endpoint,
// honouring the key, takes it once.
func TestExecutionResumes(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := executorNode(t, rcv)
	block := make(chan struct{})
	rcv.mu.Lock()
	rcv.block = block
	rcv.mu.Unlock()
	run := mirror(t, n, `{"actions": [{"kind": "submit", "params": {"amount": 9}}]}`)
	<-rcv.received // the envelope is at the endpoint, unanswered
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	time.Sleep(50 * time.Millisecond)
	rcv.mu.Lock()
	rcv.block = nil
	rcv.mu.Unlock()
	close(block) // taken, but the node has stopped listening for the answer
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	n2 := startNodeWith(t, realWasm(t), func(c *node.Config) {
		*c = n.cfg
	})
	r := settled(t, n2, run.ID)
	if e := r.Executions[0]; e.State != "confirmed" || e.Attempts != 2 {
		t.Fatalf("resumed execution = %+v; want confirmed at its second attempt", e)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bodies["/vault"]) != 1 || rcv.keys[r.Executions[0].Key] != 2 {
		t.Fatalf("vault took %d envelopes and saw the key %d times; want 1 and 2", len(rcv.bodies["/vault"]), rcv.keys[r.Executions[0].Key])
	}
}

// TestPlan: a planned fire runs the service on its state and shows what
// would be executed, the signed envelope and its digest included, while
// executing nothing, writing no state and recording no run; a run is
// found by its id alone, with its executions.
func TestPlan(t *testing.T) {
	rcv := newReceiver(t)
	n, key := executorNode(t, rcv)
	ctx := context.Background()
	p, err := n.op.Plan(ctx, "mirror", json.RawMessage(`{"actions": [{"kind": "submit", "params": {"amount": 3}},
		{"kind": "http", "params": {"method": "GET", "url": "`+rcv.URL+`/x"}}], "state": {"set": {"n": 1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Plan || p.Outcome != "ok" || len(p.Executions) != 2 || p.Executions[0].State != "planned" || p.Executions[0].Envelope == "" {
		t.Fatalf("plan = %+v", p)
	}
	env, err := envelope.VerifyFrom([]byte(p.Executions[0].Envelope), key.Public)
	if err != nil || env.RunID != p.ID || p.Executions[0].Digest != envelope.Digest(mustCanonical(t, env)) {
		t.Fatalf("planned envelope %+v, %v", env, err)
	}
	bad, err := n.op.Plan(ctx, "mirror", json.RawMessage(`{"actions": [{"kind": "submit", "params": {"target": "x"}}]}`))
	if err != nil || bad.Outcome != "rejected" || len(bad.Executions) != 0 {
		t.Fatalf("a plan breaking the rules = %+v, %v; want rejected, nothing planned", bad, err)
	}
	time.Sleep(100 * time.Millisecond)
	if st := mirrorState(t, n); len(st) != 0 {
		t.Errorf("a plan wrote state %v", st)
	}
	if runs, _ := n.op.Runs(ctx, "mirror", 10); len(runs) != 0 {
		t.Errorf("a plan recorded %d runs", len(runs))
	}
	if len(rcv.taken("/vault"))+len(rcv.taken("/x")) != 0 {
		t.Errorf("a plan sent something")
	}
	run := mirror(t, n, `{"actions": [{"kind": "submit", "params": {"amount": 3}}]}`)
	settled(t, n, run.ID)
	got, err := n.op.RunByID(ctx, run.ID)
	if err != nil || got.ID != run.ID || len(got.Executions) != 1 || got.Executions[0].State != "confirmed" {
		t.Fatalf("run by id = %+v, %v", got, err)
	}
	if _, err := n.op.RunByID(ctx, "nosuchrun"); status(err) != 404 {
		t.Fatalf("unknown run id: %v", err)
	}
}

// TestRegisteredKind: an action of a kind the operator registered
// (executors.kinds) is handed, as an event on executor.KIND, to the
// operator's service that executes it; an undeclared or unregistered kind
// is refused before anything runs.
func TestRegisteredKind(t *testing.T) {
	rcv := newReceiver(t)
	n, _ := executorNode(t, rcv, func(c *node.Config) { c.Executors.Kinds = map[string]string{"transfer": "transferer"} })
	ctx := context.Background()
	exec := mirrorService(t, "name: mirror", "name: transferer", "- {kind: manual}", "- {kind: event, topic: executor.transfer}",
		"target: vault-7\n", "", `network: ["api.example:443"]`, "network: none")
	if _, err := n.op.Submit(ctx, pack(t, exec)); err != nil {
		t.Fatal(err)
	}
	svc := mirrorService(t, "actions: [submit, http]", "actions: [transfer, bridge]", "version: 1.0.0", "version: 1.1.0",
		"target: vault-7", "target: vault", `network: ["api.example:443"]`, "network: none")
	if _, err := n.op.Submit(ctx, pack(t, svc)); err != nil {
		t.Fatal(err)
	}
	r := settled(t, n, mirror(t, n, `{"actions": [{"kind": "transfer", "params": {"to": "bob", "amount": 4}}]}`).ID)
	e := r.Executions[0]
	if e.Kind != "transfer" || e.State != "confirmed" || e.Sequence == 0 {
		t.Fatalf("transfer execution = %+v; want confirmed with the event's sequence", e)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs, err := n.op.Runs(ctx, "transferer", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == 1 {
			if tr := runs[0].Trigger; tr.Topic != "executor.transfer" || tr.Publisher != "executor:transfer" || tr.Seq != e.Sequence {
				t.Fatalf("the executor's run was triggered by %+v; want event %d on executor.transfer from executor:transfer", tr, e.Sequence)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registered executor did not run: %+v", runs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	bad := mirror(t, n, `{"actions": [{"kind": "bridge", "params": {}}]}`)
	wantRejected(t, n, bad, `actions[0].kind: "bridge" has no executor on this node (built in: http, emit, publish, log, submit; others are registered by the operator under executors.kinds)`)
}

// TestExecutorsConfigErrors: each bad executors key is named with its
// rule, all of them at once, and the config is refused.
func TestExecutorsConfigErrors(t *testing.T) {
	_, err := node.ParseConfig([]byte(`executors:
  http: {timeout: 1ms, max_response: 2Mi}
  targets: {"Bad Name": {endpoint: "https://x.example"}, vault: {endpoint: "ftp://x"}}
  kinds: {http: svc, transfer: ""}
  attempts: 0
  backoff: 2s
  backoff_max: 1s
  workers: 5000
`), false)
	if err == nil {
		t.Fatal("a bad executors section was accepted")
	}
	for _, want := range []string{
		"executors.http.timeout: must be a duration from 100ms to 5m0s",
		"executors.http.max_response: must be a size from 0 to 1Mi",
		"executors.targets.Bad Name: a target name is [a-z0-9][a-z0-9_-]{0,62}",
		"executors.targets.vault.endpoint: must be an absolute http or https URL",
		"executors.kinds.http: is a built-in kind",
		"executors.kinds.transfer: must name a service",
		"executors.attempts: must be from 1 to 100",
		"executors.backoff_max: must be at least executors.backoff",
		"executors.workers: must be from 1 to 1024",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
