package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// The tests below run testdata/mirror, a real wasm reactor that returns its
// message as its output, so each test says exactly what the guest asks
// for. It declares the kinds submit and http and has state.

var (
	mirrorOnce sync.Once
	mirrorWasm string
	mirrorErr  error
)

// mirrorService returns a copy of testdata/mirror with its main.wasm built and
// each pair of old, new replaced in its manifest.
func mirrorService(t testing.TB, pairs ...string) string {
	t.Helper()
	example(t, "greeter") // skips without the go toolchain
	mirrorOnce.Do(func() {
		var dir string
		if dir, mirrorErr = os.MkdirTemp("", "andromeda-mirror-"); mirrorErr != nil {
			return
		}
		mirrorWasm = filepath.Join(dir, "main.wasm")
		mirrorErr = gobuild.Wasm(context.Background(), filepath.Join("testdata", "mirror"), mirrorWasm, gobuild.Reactor)
	})
	if mirrorErr != nil {
		t.Fatal(mirrorErr)
	}
	dir := t.TempDir()
	copyFile(t, filepath.Join("testdata", "mirror", "andromeda.yaml"), filepath.Join(dir, "andromeda.yaml"))
	copyFile(t, mirrorWasm, filepath.Join(dir, "main.wasm"))
	editManifest(t, dir, pairs...)
	return dir
}

// mirror fires the mirror service with out as its message.
func mirror(t *testing.T, n *testNode, out string) api.Run {
	t.Helper()
	r, err := n.op.Fire(context.Background(), "mirror", json.RawMessage(out))
	if err != nil {
		t.Fatalf("fire mirror with %s: %v", out, err)
	}
	return r
}

// mirrorState is the mirror service's state as JSON text per key.
func mirrorState(t *testing.T, n *testNode) map[string]string {
	t.Helper()
	snap, err := node.ServiceState(context.Background(), n.Node, "mirror")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for k, v := range snap.Values {
		m[k] = string(v)
	}
	return m
}

// wantRejected checks that r, and r as recorded, ended rejected with
// exactly the problems want, and kept the output it returned.
func wantRejected(t *testing.T, n *testNode, r api.Run, want ...string) {
	t.Helper()
	if r.Outcome != "rejected" || r.Error != strings.Join(want, "\n") {
		t.Errorf("run = %s %q; want rejected with %q", r.Outcome, r.Error, strings.Join(want, "\n"))
	}
	if r.Output == nil || len(r.Output.Actions) == 0 {
		t.Errorf("rejected run kept no output (%+v); want the actions it returned, for debugging", r.Output)
	}
	got, err := n.op.Run(context.Background(), "mirror", r.ID)
	if err != nil || got.Outcome != r.Outcome || got.Error != r.Error {
		t.Errorf("run %s as recorded = %+v, %v; want it as returned", r.ID, got, err)
	}
}

// TestActionsEnforced: a run returning a kind its manifest does not
// declare, or a built-in kind with bad params, ends rejected with every
// broken rule and its path, and nothing of it takes effect: its state
// change is not committed and its emits are not published. A declared,
// valid output still ends ok, commits and publishes.
func TestActionsEnforced(t *testing.T) {
	n := startNodeWith(t, realWasm(t))
	if _, err := n.op.Submit(context.Background(), pack(t, mirrorService(t))); err != nil {
		t.Fatal(err)
	}

	ok := mirror(t, n, `{"actions": [{"kind": "submit", "params": {"target": "vault-7", "amount": 5}},
		{"kind": "http", "params": {"method": "POST", "url": "https://api.example/rebalance", "headers": {"X-Run": "1"}, "body": {"a": 1}}}],
		"emit": [{"topic": "moved", "message": 1}], "state": {"set": {"n": 1}}}`)
	if ok.Outcome != "ok" || ok.Output == nil || len(ok.Output.Actions) != 2 {
		t.Fatalf("declared, valid output = %+v; want ok with its two actions", ok)
	}
	if len(ok.Emitted) != 1 || ok.Emitted[0].Sequence == 0 {
		t.Fatalf("ok run's emits = %+v; want its one emit published", ok.Emitted)
	}
	if st := mirrorState(t, n); st["n"] != "1" {
		t.Fatalf("state after the ok run = %v, want n 1", st)
	}

	undeclared := mirror(t, n, `{"actions": [{"kind": "submit", "params": {}}, {"kind": "transfer", "params": {"to": "x"}}],
		"emit": [{"topic": "moved", "message": 1}], "state": {"set": {"n": 2}}}`)
	wantRejected(t, n, undeclared, `actions[1].kind: "transfer" is not declared in capabilities.actions (submit, http)`)
	if len(undeclared.Emitted) != 0 {
		t.Errorf("rejected run's emits = %+v; want none published", undeclared.Emitted)
	}

	badHTTP := mirror(t, n, `{"actions": [{"kind": "http", "params": {"method": "FETCH", "url": "/rebalance", "retries": 3}}],
		"state": {"set": {"n": 3}}}`)
	wantRejected(t, n, badHTTP,
		"actions[0].params.retries: unknown field (kind http takes method, url, headers, body)",
		"actions[0].params.method: must be one of GET HEAD POST PUT PATCH DELETE",
		"actions[0].params.url: must be an absolute http or https URL")

	missing := mirror(t, n, `{"actions": [{"kind": "http"}, {"kind": "submit", "params": [1]}], "state": {"delete": ["n"]}}`)
	wantRejected(t, n, missing,
		`actions[0].params: must be a JSON object for kind http {"method", "url", "headers"?, "body"?}`,
		"actions[1].params: must be a JSON object for kind submit")

	if st := mirrorState(t, n); st["n"] != "1" {
		t.Errorf("state after three rejected runs = %v; want n 1, as the ok run left it", st)
	}
	if again := mirror(t, n, `{"actions": [{"kind": "submit", "params": {"amount": 1}}], "state": {"set": {"n": 4}}}`); again.Outcome != "ok" {
		t.Errorf("valid output after rejected runs = %s %q, want ok", again.Outcome, again.Error)
	}
	if st := mirrorState(t, n); st["n"] != "4" {
		t.Errorf("state after the last ok run = %v, want n 4", st)
	}
}

// TestActionCaps: the manifest's caps (actions per run, a numeric param
// of a kind) reject a run that goes over them, naming the cap, and commit
// nothing of it; a run within them is ok. The policy's
// limits.actions_per_run clamps the manifest's cap.
func TestActionCaps(t *testing.T) {
	n := startNodeWith(t, realWasm(t), func(c *node.Config) {
		c.Policy.Limits.ActionsPerRun = policy.Ceiling[int]{Max: 3, Over: policy.OverClamp}
	})
	dir := mirrorService(t, "  state: true\n", "  state: true\n  caps: {actions_per_run: 5, params: {submit: {amount: 1000}}}\n")
	res, err := n.op.Submit(context.Background(), pack(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Service.Decision.Limits.ActionsPerRun; got != 3 {
		t.Errorf("decision's actions_per_run = %d, want 3: the manifest's 5 clamped to the policy's ceiling", got)
	}

	within := mirror(t, n, `{"actions": [{"kind": "submit", "params": {"amount": 1000}}, {"kind": "submit", "params": {"amount": "999.99"}},
		{"kind": "submit", "params": {"memo": "no amount"}}], "state": {"set": {"n": 1}}}`)
	if within.Outcome != "ok" {
		t.Fatalf("output within the caps = %s %q, want ok", within.Outcome, within.Error)
	}

	over := mirror(t, n, `{"actions": [{"kind": "submit", "params": {"amount": 1500}}, {"kind": "submit", "params": {"amount": "lots"}}],
		"state": {"set": {"n": 2}}}`)
	wantRejected(t, n, over,
		"actions[0].params.amount: 1500 is above the cap 1000 (capabilities.caps.params.submit.amount)",
		"actions[1].params.amount: must be a number, or a string holding a decimal number, because capabilities.caps.params.submit.amount caps it")

	four := `{"actions": [` + strings.Repeat(`{"kind": "submit", "params": {"amount": 1}}, `, 3) + `{"kind": "submit", "params": {"amount": 1}}], "state": {"set": {"n": 3}}}`
	wantRejected(t, n, mirror(t, n, four), "actions: 4 actions, above the cap of 3 per run (limits.actions_per_run of the node's policy)")

	if st := mirrorState(t, n); st["n"] != "1" {
		t.Errorf("state after runs over the caps = %v; want n 1, as the run within them left it", st)
	}
}

// TestRateCaps: under capabilities.caps.actions_per_minute a run whose
// actions would pass the minute's budget is rejected, naming the cap, and
// a rejected run takes nothing from it; under runs_per_minute a firing
// beyond the cap is skipped (429, recorded with its reason) and never
// reaches the guest.
func TestRateCaps(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	dir := mirrorService(t, "  state: true\n", "  state: true\n  caps: {runs_per_minute: 4, actions_per_minute: 3}\n")
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	two := `{"actions": [{"kind": "submit", "params": {}}, {"kind": "submit", "params": {}}]}`
	if r := mirror(t, n, two); r.Outcome != "ok" {
		t.Fatalf("first run = %s %q, want ok: 2 of 3 actions", r.Outcome, r.Error)
	}
	wantRejected(t, n, mirror(t, n, two), "actions: 2 actions with the 2 of the last minute are above the cap of 3 per minute (capabilities.caps.actions_per_minute)")
	if r := mirror(t, n, `{"actions": [{"kind": "submit", "params": {}}]}`); r.Outcome != "ok" {
		t.Fatalf("third run = %s %q, want ok: the rejected run took nothing, so 1 more fits", r.Outcome, r.Error)
	}
	if r := mirror(t, n, `{"noop": "fourth"}`); r.Outcome != "noop" {
		t.Fatalf("fourth run = %s %q, want noop", r.Outcome, r.Error)
	}
	var invoked atomic.Int32
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		invoked.Add(1)
		return invoke()
	})
	_, err := n.op.Fire(ctx, "mirror", json.RawMessage(`{"noop": "fifth"}`))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Run == nil ||
		ae.Run.Outcome != "skipped" || ae.Run.Noop != "skipped: rate cap reached (4 runs started in the last minute, capabilities.caps.runs_per_minute = 4)" {
		t.Fatalf("fifth firing in a minute = %v (%+v); want 429 with the run skipped for the rate cap", err, ae)
	}
	if invoked.Load() != 0 {
		t.Errorf("the skipped firing reached the guest")
	}
}
