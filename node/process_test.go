package node_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestProcessServices runs the Node.js and Python examples end to end on the
// process driver: submit, fire, state, runs read back.
func TestProcessServices(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	var enabled bool
	var why string
	for _, d := range n.Node.Node(ctx).Drivers {
		if d.Name == "process" {
			enabled, why = d.Enabled, d.Reason
		}
	}
	sandboxtest.Require(t, enabled, "the process driver is disabled on this host: "+why)

	if _, err := n.op.Submit(ctx, pack(t, filepath.Join("..", "examples", "uptime-node"))); err != nil {
		t.Fatal(err)
	}
	fire := func(name, msg string) api.Run {
		t.Helper()
		r, err := n.op.Fire(ctx, name, json.RawMessage(msg))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := fire("uptime-node", `{"up": true}`); r.Outcome != "noop" || r.Noop != "check passed" {
		t.Fatalf("up = %+v", r)
	}
	if r := fire("uptime-node", `{"up": false}`); r.Outcome != "noop" || !strings.Contains(r.Noop, "failed once") {
		t.Fatalf("first failure = %+v", r)
	}
	// State carried the first failure: the second one alerts.
	r := fire("uptime-node", `{"up": false}`)
	if r.Outcome != "ok" || len(r.Output.Actions) != 1 || r.Output.Actions[0].Kind != "log" || r.Usage.WallNS <= 0 {
		t.Fatalf("second failure = %+v", r)
	}

	if _, err := n.op.Submit(ctx, pack(t, filepath.Join("..", "examples", "digest-python"))); err != nil {
		t.Fatal(err)
	}
	r = fire("digest-python", `{"text": "abc"}`)
	if r.Outcome != "ok" || !strings.Contains(string(r.Output.Emit[0].Message), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") {
		t.Fatalf("digest = %+v", r)
	}
	if r := fire("digest-python", `{}`); r.Outcome != "noop" {
		t.Fatalf("no text = %+v", r)
	}
	runs, err := n.op.Runs(ctx, "", 10)
	if err != nil || len(runs) != 5 {
		t.Fatalf("runs = %d, %v", len(runs), err)
	}
	// Dependencies are per process service; a wasm service has none to manage.
	if deps, err := n.op.Deps(ctx, "uptime-node"); err != nil || len(deps) != 0 {
		t.Fatalf("deps = %v, %v", deps, err)
	}
	if err := n.op.AddDep(ctx, "uptime-node", ""); status(err) != 400 {
		t.Fatalf("empty package: %v", err)
	}
	svc, err := n.op.Service(ctx, "uptime-node")
	if err != nil || svc.Decision.Driver != "process" || svc.Health == nil || !svc.Health.Healthy {
		t.Fatalf("inspect = %+v, %v", svc, err)
	}
}
