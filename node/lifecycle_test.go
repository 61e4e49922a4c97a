package node_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestStopGraceLetsRunsFinish: a run in flight that ends within the stop's
// grace finishes and is recorded as it ended; the stop answers when it is
// recorded, well before the grace is over.
func TestStopGraceLetsRunsFinish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	for _, d := range n.Node.Node(ctx).Drivers {
		if d.Name == "process" {
			sandboxtest.Require(t, d.Enabled, "the process driver is disabled on this host: "+d.Reason)
		}
	}
	dir := t.TempDir()
	files := map[string]string{
		"main.py": "import time\n\ndef handle(input):\n    time.sleep(1)\n    return {\"noop\": \"slept\"}\n",
		"andromeda.yaml": "name: napper\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: server\n" +
			"triggers:\n  - {kind: manual}\nresources: {memory: 64Mi, timeout: 20s}\ncapabilities: {network: none}\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	ran := make(chan api.Run, 1)
	go func() {
		r, err := n.op.Fire(ctx, "napper", nil)
		if err != nil {
			t.Error(err)
		}
		ran <- r
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		fl, err := n.op.Running(ctx, "napper")
		if err != nil {
			t.Fatal(err)
		}
		if len(fl) == 1 {
			break // in flight: the stop comes while it runs
		}
		if time.Now().After(deadline) {
			t.Fatal("the fire did not start its run within 20 s")
		}
	}
	start := time.Now()
	s, err := n.op.Stop(ctx, "napper", 20*time.Second)
	if err != nil || s.Phase != api.PhaseStopped {
		t.Fatalf("stop: %+v, %v", s, err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("stop took %s for a run of 1 s", took)
	}
	// The run is recorded when the stop answers; its fire's answer travels
	// back on its own connection, a moment later or sooner.
	runs, err := n.op.Runs(ctx, "napper", 10)
	if err != nil || len(runs) != 1 || runs[0].Outcome != "noop" || runs[0].Noop != "slept" {
		t.Errorf("runs when the stop answered: %+v, %v; want the run in flight, recorded as it ended", runs, err)
	}
	select {
	case r := <-ran:
		if r.Outcome != "noop" || r.Noop != "slept" {
			t.Errorf("the run in flight at stop: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Error("the fire of the run in flight did not answer")
	}
}

// TestLifecycleConfig: lifecycle.stop_grace is a duration from 0 to 10m,
// lifecycle.prewarm one from 0 to 1m.
func TestLifecycleConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml, err string
	}{
		{"lifecycle: {stop_grace: 30s}", ""},
		{"lifecycle: {stop_grace: 0s}", ""},
		{"lifecycle: {stop_grace: soon}", "lifecycle.stop_grace: must be a duration from 0s to 10m0s"},
		{"lifecycle: {stop_grace: 11m}", "lifecycle.stop_grace: must be a duration from 0s to 10m0s"},
		{"lifecycle: {stop_grace: -1s}", "lifecycle.stop_grace: must be a duration from 0s to 10m0s"},
		{"lifecycle: {grace: 1s}", "lifecycle.grace"},
		{"lifecycle: {prewarm: 0s}", ""},
		{"lifecycle: {prewarm: 1m}", ""},
		{"lifecycle: {prewarm: 61s}", "lifecycle.prewarm: must be a duration from 0s to 1m0s"},
		{"lifecycle: {prewarm: -1s}", "lifecycle.prewarm: must be a duration from 0s to 1m0s"},
		{"lifecycle: {prewarm: early}", "lifecycle.prewarm: must be a duration from 0s to 1m0s"},
	} {
		_, err := node.ParseConfig([]byte(tc.yaml), false)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.err)
		}
	}
}

// TestLifecycleRefusals: the steps that do not apply to a service's phase
// are refused with a 4xx naming it, and change nothing; a submitter may
// stop and start its own service but not another's.
func TestLifecycleRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	if _, err := n.op.SubmitWith(ctx, pack(t, echoService(t, "quiet")), api.SubmitOptions{NoStart: true}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, code int, want string) {
		t.Helper()
		if status(err) != code || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %d naming %q", what, err, code, want)
		}
	}
	_, err := n.op.Fire(ctx, "quiet", json.RawMessage(`{}`))
	check("fire a deployed service", err, 409, "deployed but not started")
	if _, err := n.op.Stop(ctx, "quiet", 0); err != nil {
		t.Fatal(err)
	}
	_, err = n.op.Stop(ctx, "quiet", 0)
	check("stop a stopped service", err, 409, "already stopped")
	_, err = n.op.Stop(ctx, "quiet", time.Hour)
	check("a grace over the limit", err, 400, "grace")
	if s, err := n.op.Service(ctx, "quiet"); err != nil || s.Phase != api.PhaseStopped || s.Status != "stopped" {
		t.Fatalf("after refusals: %+v, %v", s, err)
	}
	// Start deploys a stopped service first.
	if s, err := n.op.Start(ctx, "quiet"); err != nil || s.Phase != api.PhaseStarted || s.Status != "deployed" {
		t.Fatalf("start a stopped service: %+v, %v", s, err)
	}
	if r, err := n.op.Fire(ctx, "quiet", json.RawMessage(`{}`)); err != nil || r.ID == "" {
		t.Fatalf("fire after start: %+v, %v", r, err) // echo.wasm echoes its input back: an error run, but a run
	}
	_, err = n.op.Deploy(ctx, "quiet")
	check("deploy a started service", err, 409, "is started")
	_, err = n.op.Start(ctx, "nobody")
	check("start an unknown service", err, 404, "nobody")

	tok, err := n.op.CreateToken(ctx, "bob", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	bob := api.NewClient(n.Addr(), tok.Secret)
	_, err = bob.Stop(ctx, "quiet", 0)
	check("stop another's service", err, 404, "quiet")
	if _, err := bob.Submit(ctx, pack(t, echoService(t, "bobs"))); err != nil {
		t.Fatal(err)
	}
	if s, err := bob.Stop(ctx, "bobs", 0); err != nil || s.Phase != api.PhaseStopped {
		t.Fatalf("the owner stops its own service: %+v, %v", s, err)
	}
	if err := bob.Remove(ctx, "bobs"); status(err) != 403 {
		t.Errorf("the owner removes its service: %v, want 403 (operator only)", err)
	}
}
