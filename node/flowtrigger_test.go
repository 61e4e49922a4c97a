package node_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
)

// flowRelayJS passes its message on (op pass) or keeps it (any other op).
const flowRelayJS = `exports.decide = (ctx) => ctx.config.op === 'pass'
  ? { emit: [{ port: 'out', message: ctx.message }] }
  : { noop: JSON.stringify(ctx.message) };`

// relayNode is a node with the relay service (flowRelayJS).
func relayNode(t *testing.T) *testNode {
	t.Helper()
	n := startNode(t)
	requireProcess(t, n)
	if _, err := n.op.Submit(context.Background(), pack(t, statelessService(t, "relay", "node", flowRelayJS, 2))); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFlowTriggers: a running flow's cron trigger starts flow runs at the
// entries with its input, every second; its event trigger stores each
// event published on its topic as a flow run at the module it names; a
// stopped flow schedules nothing and its events wait in the stream until
// it starts again; a new version without the triggers stops them; bad
// triggers are refused with their paths.
func TestFlowTriggers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := relayNode(t)
	const yaml = "application/yaml"
	modules := "modules:\n  - {id: p, service: relay, config: {op: pass}}\n  - {id: s, service: relay, config: {op: keep}}\nwires:\n  - {from: p, to: s}\n"
	doc := "id: trig\nversion: 1.0.0\n" + modules + "triggers:\n  - {kind: cron, every: 1s, input: {tick: 1}}\n  - {kind: event, topic: orders.new, module: s}\n" +
		"  - {kind: http, path: /hooks/trig, methods: [post], auth: none, module: s}\n"
	if _, err := n.op.ApplyFlow(ctx, yaml, []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	f, err := n.op.StartFlow(ctx, "trig")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Triggers) != 3 || f.Triggers[0].On != "every 1s" || f.Triggers[0].Next == nil || f.Triggers[1].On != "topic orders.new" || f.Triggers[1].Module != "s" ||
		f.Triggers[2].On != "POST /hooks/trig" {
		t.Errorf("triggers = %+v", f.Triggers)
	}
	if _, err := n.op.Publish(ctx, "orders.new", json.RawMessage(`{"order":1}`)); err != nil {
		t.Fatal(err)
	}
	// The webhook: 202 once stored, the flow run named; other methods 405.
	hook := call(t, n.Addr(), "POST", "/hooks/trig", `{"order":"h"}`, "Content-Type", "application/json")
	hookRun := hook.header.Get("Andromeda-Flow-Run")
	if hook.status != 202 || hookRun == "" || !strings.Contains(hook.body, `"outcome": "queued"`) && !strings.Contains(hook.body, `"outcome":"queued"`) {
		t.Fatalf("POST /hooks/trig = %d %v %s, want 202 with the flow run", hook.status, hook.header, hook.body)
	}
	if a := call(t, n.Addr(), "GET", "/hooks/trig", ""); a.status != 405 {
		t.Errorf("GET /hooks/trig = %d, want 405", a.status)
	}
	// A path a running flow mounts is not a service's to take.
	if _, err := n.op.Submit(ctx, pack(t, hookService(t, "/hooks/open", "/hooks/trig"))); status(err) != 409 || !strings.Contains(err.Error(), "mounted by flow trig (triggers[2])") {
		t.Errorf("a service mounting the flow's path = %v, want 409", err)
	}
	// Two ticks and the event.
	count := func(runs []api.FlowRun) (ticks, events int) {
		for _, r := range runs {
			switch {
			case len(r.Steps) == 2 && r.Steps[0].Module == "p" && compact(r.Input) == `{"tick":1}` && r.Outcome == "ok" && strings.HasPrefix(r.By, "triggers[0] (cron tick at "):
				ticks++
			case len(r.Steps) == 1 && r.Steps[0].Module == "s" && compact(r.Input) == `{"order":1}` && r.Outcome == "ok" && strings.HasPrefix(r.By, "triggers[1] (event orders.new #"):
				events++
			}
		}
		return ticks, events
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		runs, err := n.op.FlowRuns(ctx, "trig", 1000)
		if err != nil {
			t.Fatal(err)
		}
		ticks, events := count(runs)
		hooked := false
		for _, r := range runs {
			var req contract.HTTPRequest
			if r.ID == hookRun && r.Outcome == "ok" && json.Unmarshal(r.Input, &req) == nil && compact(req.Body) == `{"order":"h"}` && r.By == "triggers[2] (POST /hooks/trig)" {
				hooked = true
			}
		}
		if ticks >= 2 && events == 1 && hooked {
			break
		}
		if time.Now().After(deadline) {
			for _, r := range runs {
				t.Logf("%s %s steps %d input %s", r.ID, r.Outcome, len(r.Steps), r.Input)
			}
			t.Fatalf("after 30s: %d ticks and %d events ran, want ≥ 2 and 1; the webhook's flow run ran: %v", ticks, events, hooked)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Stopped: no ticks; an event published meanwhile runs after the start.
	if _, err := n.op.StopFlow(ctx, "trig"); err != nil {
		t.Fatal(err)
	}
	before, err := n.op.FlowRuns(ctx, "trig", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Publish(ctx, "orders.new", json.RawMessage(`{"order":2}`)); err != nil {
		t.Fatal(err)
	}
	if a := call(t, n.Addr(), "POST", "/hooks/trig", `{}`); a.status != 404 {
		t.Errorf("POST to a stopped flow's webhook = %d, want 404", a.status)
	}
	time.Sleep(2500 * time.Millisecond)
	if after, err := n.op.FlowRuns(ctx, "trig", 1000); err != nil || len(after) != len(before) {
		t.Fatalf("a stopped flow ran %d flow runs (%v), want none", len(after)-len(before), err)
	}
	// The new version: cron gone, the event trigger kept (its events
	// resume where they were).
	doc2 := "id: trig\nversion: 1.1.0\n" + modules + "triggers:\n  - {kind: event, topic: orders.new, module: s}\n"
	if a, err := n.op.ApplyFlow(ctx, yaml, []byte(doc2), false); err != nil || len(a.Changes) != 2 || a.Changes[0] != "triggers changed (3 → 1)" {
		t.Fatalf("apply 1.1.0 = %+v, %v", a, err)
	}
	if _, err := n.op.StartFlow(ctx, "trig"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		runs, err := n.op.FlowRuns(ctx, "trig", 1000)
		if err != nil {
			t.Fatal(err)
		}
		held := 0
		for _, r := range runs {
			if compact(r.Input) == `{"order":2}` && r.Outcome == "ok" {
				held++
			}
		}
		if held == 1 {
			break
		}
		if time.Now().After(deadline) || held > 1 {
			t.Fatalf("the event published while the flow was stopped ran %d times, want once", held)
		}
		time.Sleep(100 * time.Millisecond)
	}
	runs, _ := n.op.FlowRuns(ctx, "trig", 1000)
	time.Sleep(2500 * time.Millisecond)
	if later, _ := n.op.FlowRuns(ctx, "trig", 1000); len(later) != len(runs) {
		t.Errorf("%d flow runs after the cron trigger was removed, want none", len(later)-len(runs))
	}

	// Bad triggers: every problem with its path, nothing changed.
	bad := "id: trig\nversion: 2.0.0\n" + modules + "triggers:\n  - {kind: cron, every: 10ms}\n  - {kind: event, topic: 'a.*', module: zz}\n  - {kind: http}\n  - {kind: manual}\n"
	_, err = n.op.ApplyFlow(ctx, yaml, []byte(bad), false)
	for _, w := range []string{"triggers[0].every: must be a duration ≥ 1s", "triggers[1].topic", `triggers[1].module: no module "zz"`, "triggers[2].path: required for kind http", "triggers[3].kind: a flow is fired by hand"} {
		if status(err) != 400 || !strings.Contains(err.Error(), w) {
			t.Errorf("bad triggers = %v; want 400 with %q", err, w)
		}
	}
	if f, err := n.op.Flow(ctx, "trig"); err != nil || f.Version != "1.1.0" {
		t.Errorf("after bad triggers: %+v, %v; want 1.1.0 kept", f, err)
	}
}

// TestFlowApplyDeadLetters: a dry run of a version that removes a module
// says how many messages waiting in the queue are aimed at it (held there
// at a breakpoint); the apply then makes exactly those dead letters, and
// messages aimed at the entries are not counted and run on.
func TestFlowApplyDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := relayNode(t)
	const yaml = "application/yaml"
	v1 := "id: dl\nversion: 1.0.0\nmodules:\n  - {id: a, service: relay, config: {op: pass}}\n  - {id: b, service: relay, config: {op: keep}}\nwires:\n  - {from: a, to: b}\n"
	if _, err := n.op.ApplyFlow(ctx, yaml, []byte(v1), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "dl"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.SetBreakpoint(ctx, "dl", "b", true); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		req := api.FlowFireRequest{Message: json.RawMessage(`{"i":` + string(rune('0'+i)) + `}`)}
		if i < 3 {
			req.Module = "b"
		}
		if _, err := n.op.FireFlow(ctx, "dl", req); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := n.op.Flow(ctx, "dl")
		if err != nil {
			t.Fatal(err)
		}
		if f.Modules[1].Waiting == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b holds %d messages after 30s, want 5", f.Modules[1].Waiting)
		}
		time.Sleep(50 * time.Millisecond)
	}
	v2 := "id: dl\nversion: 2.0.0\nmodules:\n  - {id: a, service: relay, config: {op: keep}}\n"
	want := "3 queued message(s) aimed at removed module b: dead letters unless they run before the new version takes over"
	dry, err := n.op.ApplyFlow(ctx, yaml, []byte(v2), true)
	if err != nil || dry.DeadLetters != 3 || !slices.Contains(dry.Changes, want) {
		t.Fatalf("dry run = %+v, %v; want 3 dead letters and %q", dry, err, want)
	}
	if a, err := n.op.ApplyFlow(ctx, yaml, []byte(v2), false); err != nil || a.DeadLetters != 3 {
		t.Fatalf("apply = %+v, %v; want 3 dead letters", a, err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		dead, err := n.op.FlowDeadLetters(ctx, "dl", 100)
		if err != nil {
			t.Fatal(err)
		}
		runs, err := n.op.FlowRuns(ctx, "dl", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) == 3 && len(runs) == 5 {
			break
		}
		if time.Now().After(deadline) || len(dead) > 3 {
			t.Fatalf("%d dead letters and %d flow runs, want 3 of 5", len(dead), len(runs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
