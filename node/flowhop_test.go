package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// flowTextJS is a stateless Node.js module: op up upper-cases the
// message's text and starts its path (for an odd n after an emit to a
// port no wire leaves, so the run id of the next module is derived by
// the worker, not given by the node); op len appends its module, the
// text, its run id, its message id and its trigger's name, and throws on
// n = 13.
const flowTextJS = `exports.decide = (ctx) => {
  const m = ctx.message;
  if (ctx.config.op === 'up') {
    const out = { port: 'out', message: { n: m.n, s: String(m.s).toUpperCase(), path: [ctx.trigger.flow.module] } };
    return { emit: m.n % 2 ? [{ port: 'aside', message: {} }, out] : [out] };
  }
  if (m.n === 13) throw new Error('thirteen is refused');
  const via = m.path.concat(ctx.trigger.flow.module).join('>') + '|' + m.s + '|' + ctx.run_id + '|' + ctx.trigger.flow.message + '|' + ctx.trigger.name;
  return { emit: [{ port: 'out', message: { n: m.n, via } }] };
};`

// flowTextPy is flowTextJS in Python.
const flowTextPy = `def decide(ctx):
    m = ctx["message"]
    flow = ctx["trigger"]["flow"]
    if ctx["config"]["op"] == "up":
        out = {"port": "out", "message": {"n": m["n"], "s": str(m["s"]).upper(), "path": [flow["module"]]}}
        return {"emit": [{"port": "aside", "message": {}}, out] if m["n"] % 2 else [out]}
    if m["n"] == 13:
        raise ValueError("thirteen is refused")
    via = ">".join(m["path"] + [flow["module"]]) + "|" + m["s"] + "|" + ctx["run_id"] + "|" + flow["message"] + "|" + ctx["trigger"]["name"]
    return {"emit": [{"port": "out", "message": {"n": m["n"], "via": via}}]}
`

// statelessService writes a service of language (node, python) without
// state, with concurrency workers.
func statelessService(t testing.TB, name, language, code string, concurrency int) string {
	t.Helper()
	dir := t.TempDir()
	entry := map[string]string{"node": "index.js", "python": "main.py"}[language]
	m := "name: " + name + "\nversion: 1.0.0\ndescription: test\nruntime: {driver: process, language: " + language + ", entry: " + entry + "}\nmode: server\ntriggers:\n  - {kind: manual}\n" +
		"resources: {memory: 128Mi, timeout: 10s, concurrency: " + strconv.Itoa(concurrency) + "}\ncapabilities: {network: none}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, entry), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestFlowSameWorker: two modules of one Node.js service (and of one
// Python service), wired a → b,
// hand their message over inside the worker (runtime protocol 2): each
// message costs the worker one invoke and one result (two protocol
// messages, not four), b's step says in_worker, b's run is recorded like
// any module run (its id the one the node derives, which the handler
// saw, its trigger the flow's), the wire b → c to another service goes
// through the node, order holds, and b failing inside the worker fails
// the flow run naming b.
func TestFlowSameWorker(t *testing.T) {
	t.Parallel()
	for language, code := range map[string]string{"node": flowTextJS, "python": flowTextPy} {
		t.Run(language, func(t *testing.T) {
			t.Parallel()
			sameWorker(t, language, code)
		})
	}
}

// sameWorker is TestFlowSameWorker with the text service in language.
func sameWorker(t *testing.T, language, code string) {
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	for _, dir := range []string{
		statelessService(t, "text", language, code, 1),
		nodeService(t, "keep", "{memory: 128Mi, timeout: 10s}", flowKeepJS),
	} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	const doc = "id: hops\nversion: 1.0.0\nmodules:\n  - {id: a, service: text, config: {op: up}}\n  - {id: b, service: text, config: {op: len}}\n  - {id: c, service: keep}\n" +
		"wires:\n  - {from: a, to: b}\n  - {from: b, to: c}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "hops"); err != nil {
		t.Fatal(err)
	}
	// One message first: the worker is warm and has said which protocol
	// it speaks before the count starts.
	if _, err := n.op.FireFlow(ctx, "hops", api.FlowFireRequest{Message: json.RawMessage(`{"n":1,"s":"warm"}`), Wait: "60s"}); err != nil {
		t.Fatal(err)
	}
	sent0, recv0, ok := node.ProtocolMessages(n.Node, "text")
	if !ok {
		t.Fatal("the text service's deployment does not count protocol messages")
	}
	const msgs = 40
	for i := 2; i < 2+msgs; i++ {
		if _, err := fireStored(n, "hops", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"m%d"}`, i, i))}); err != nil {
			t.Fatal(err)
		}
	}
	runs := waitFlowRuns(t, n, "hops", msgs+1)
	waitFlowIdle(t, n, "hops", 30*time.Second)
	sent, recv, _ := node.ProtocolMessages(n.Node, "text")
	if sent-sent0 != msgs || recv-recv0 != msgs {
		t.Errorf("protocol messages for %d flow messages through a → b: %d sent, %d received; want %d each (one invoke and one result, b inside the worker)",
			msgs, sent-sent0, recv-recv0, msgs)
	}

	bRuns := map[string]api.FlowStep{}
	for _, r := range runs {
		var in struct{ N int }
		_ = json.Unmarshal(r.Input, &in)
		if in.N == 13 {
			if r.Outcome != "failed" || r.Module != "b" || !strings.Contains(r.Error, "module b (service text) ended crashed") || !strings.Contains(r.Error, "thirteen is refused") ||
				len(r.Steps) != 2 || !r.Steps[1].InWorker || r.Steps[1].Outcome != "crashed" {
				t.Errorf("flow run of n=13 = %+v; want failed at b, inside the worker", r)
			}
			continue
		}
		if r.Outcome != "ok" || len(r.Steps) != 3 {
			t.Errorf("flow run of n=%d = %+v; want ok in three steps", in.N, r)
			continue
		}
		for j, s := range r.Steps {
			if want := j == 1; s.InWorker != want || s.Module != string(rune('a'+j)) {
				t.Errorf("flow run of n=%d step %d = %+v; want module %c, in_worker %v", in.N, j, s, 'a'+j, want)
			}
		}
		bRuns[fmt.Sprint(in.N)] = r.Steps[1]
	}
	got := seen(t, n)
	if len(got) != msgs { // 1 + msgs fired, n=13 failed at b
		t.Fatalf("keep saw %d messages, want %d: %q", len(got), msgs, got)
	}
	k := 0
	for i := 1; i < 2+msgs; i++ {
		if i == 13 {
			continue
		}
		var m int
		var via string
		fmt.Sscanf(got[k], "%d:", &m)
		via = strings.TrimPrefix(got[k], fmt.Sprint(m)+":")
		k++
		if m != i {
			t.Errorf("keep's message %d is n=%d, want n=%d (in order)", k, m, i)
			continue
		}
		parts := strings.Split(via, "|")
		s := bRuns[fmt.Sprint(i)]
		if len(parts) != 5 || parts[0] != "a>b" || parts[1] != strings.ToUpper(fmt.Sprintf("m%d", i)) && i != 1 || parts[2] != s.Run || parts[3] != s.Message || parts[4] != "flow hops/b" {
			t.Errorf("n=%d reached c as %q; want a>b, the upper-cased text, b's run %s, its message %s, trigger flow hops/b", i, via, s.Run, s.Message)
		}
		run, err := n.op.Run(ctx, "text", s.Run)
		if err != nil || run.Outcome != "ok" || run.Trigger.Kind != "flow" || run.Trigger.Flow == nil || run.Trigger.Flow.Module != "b" || run.Trigger.Flow.Message != s.Message {
			t.Errorf("b's run %s for n=%d = %+v, %v; want recorded ok with the flow trigger", s.Run, i, run, err)
		}
	}
}

// TestFlowSameWorkerWasm: two modules of one stateless wasm service (the
// mirror reactor, which returns its message as its output), wired a → b,
// hand their message over inside the driver's instance pool
// (sandbox.WalkRoute): b's step says in_worker, b's run is recorded with
// the id the node derives (given by the node for a's first emit, derived
// by the driver when a's emit to b is its second), the wire b → c to a
// Node.js service goes through the node, and order holds.
func TestFlowSameWorkerWasm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	for _, dir := range []string{
		mirrorService(t, "state: true", "state: false", "memory: 16Mi", "memory: 64Mi"),
		nodeService(t, "keep", "{memory: 128Mi, timeout: 10s}", flowKeepJS),
	} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	const doc = "id: pool\nversion: 1.0.0\nmodules:\n  - {id: a, service: mirror}\n  - {id: b, service: mirror}\n  - {id: c, service: keep}\n" +
		"wires:\n  - {from: a, to: b}\n  - {from: b, to: c}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "pool"); err != nil {
		t.Fatal(err)
	}
	const msgs = 40
	for i := range msgs {
		toB := fmt.Sprintf(`{"port":"out","message":{"emit":[{"port":"out","message":{"n":%d,"via":"b"}}]}}`, i)
		if i%2 == 1 { // a's emit to b is its second: b's run id is derived in the driver
			toB = `{"port":"aside","message":{}},` + toB
		}
		if _, err := fireStored(n, "pool", api.FlowFireRequest{Message: json.RawMessage(`{"emit":[` + toB + `]}`)}); err != nil {
			t.Fatal(err)
		}
	}
	runs := waitFlowRuns(t, n, "pool", msgs)
	waitFlowIdle(t, n, "pool", 30*time.Second)
	for _, r := range runs {
		if r.Outcome != "ok" || len(r.Steps) != 3 {
			t.Fatalf("flow run %+v; want ok in three steps", r)
		}
		for j, s := range r.Steps {
			if want := j == 1; s.InWorker != want || s.Module != string(rune('a'+j)) {
				t.Errorf("flow run %s step %d = %+v; want module %c, in_worker %v", r.ID, j, s, 'a'+j, want)
			}
		}
		b := r.Steps[1]
		run, err := n.op.Run(ctx, "mirror", b.Run)
		if err != nil || run.Outcome != "ok" || run.Trigger.Flow == nil || run.Trigger.Flow.Module != "b" || run.Trigger.Flow.Message != b.Message || run.Trigger.Name != "flow pool/b" {
			t.Errorf("b's run %s = %+v, %v; want recorded ok with the flow trigger", b.Run, run, err)
		}
	}
	got := seen(t, n)
	if len(got) != msgs {
		t.Fatalf("keep saw %d messages, want %d: %q", len(got), msgs, got)
	}
	for i, s := range got {
		if s != fmt.Sprintf("%d:b", i) {
			t.Errorf("keep's message %d is %q, want %d:b (in order)", i, s, i)
		}
	}
}

// TestFlowSameWorkerReplay stops a node while its flow a → b (inside one
// Node.js worker) → c (slow, through the node) has messages in flight and
// starts it again on the same data: the flow runs that had not ended run
// again, reusing a's runs and the runs b made inside the worker, so every
// module runs each message exactly once, in order.
func TestFlowSameWorkerReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data := t.TempDir()
	n := startNode(t, func(c *node.Config) { c.Data = data })
	requireProcess(t, n)
	for _, dir := range []string{
		statelessService(t, "text", "node", flowTextJS, 1),
		nodeService(t, "keep", "{memory: 128Mi, timeout: 10s}", flowKeepJS),
	} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	const doc = "id: hops\nversion: 1.0.0\nmodules:\n  - {id: a, service: text, config: {op: up}}\n  - {id: b, service: text, config: {op: len}}\n  - {id: c, service: keep, config: {sleep: 150}}\n" +
		"wires:\n  - {from: a, to: b}\n  - {from: b, to: c}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "hops"); err != nil {
		t.Fatal(err)
	}
	const msgs = 8
	for i := range msgs {
		if _, err := n.op.FireFlow(ctx, "hops", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"r%d"}`, i+20, i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Stop once the worker has passed messages on that c has not taken.
	waitRunCount(t, n, "text", 6)
	n.Close()
	os.RemoveAll(filepath.Join(data, "services"))

	n2 := startNode(t, func(c *node.Config) { c.Data = data })
	runs := waitFlowRuns(t, n2, "hops", msgs)
	replayed, reusedB := 0, 0
	for _, r := range runs {
		if r.Outcome != "ok" || len(r.Steps) != 3 {
			t.Errorf("flow run %+v; want ok in three steps", r)
			continue
		}
		if r.Replayed {
			replayed++
		}
		if r.Steps[1].Reused {
			reusedB++
		}
	}
	if replayed == 0 || reusedB == 0 {
		t.Errorf("%d flow runs replayed, %d runs of b (made inside the worker) reused; want some of each (the stop came mid-flow)", replayed, reusedB)
	}
	got := seen(t, n2)
	if len(got) != msgs {
		t.Fatalf("keep saw %q, want %d messages", got, msgs)
	}
	for i, g := range got {
		if !strings.HasPrefix(g, fmt.Sprintf("%d:a>b|R%d|", i+20, i)) {
			t.Errorf("keep's message %d is %q, want n=%d through a and b, once, in order", i, g, i+20)
		}
	}
	if rs, err := n2.op.Runs(ctx, "text", 100); err != nil || len(rs) != 2*msgs {
		t.Errorf("runs of text = %d, %v; want %d (a and b once per message, none twice)", len(rs), err, 2*msgs)
	}
}

// TestFlowUpdateKeepsWorkers: applying a new version of a running flow
// whose module's service did not change keeps that service's warm
// workers: the same worker process (by a token it draws when it starts)
// runs the module before and after the update, and no protocol init goes
// out.
func TestFlowUpdateKeepsWorkers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	// The worker's token is drawn once, when it loads the module: a
	// worker's pid says nothing in its own pid namespace.
	const pidJS = `const token = require('node:crypto').randomUUID();
exports.decide = (ctx) => ({ emit: [{ port: 'out', message: { worker: token, tag: ctx.config.tag } }] });`
	if _, err := n.op.Submit(ctx, pack(t, statelessService(t, "pid", "node", pidJS, 1))); err != nil {
		t.Fatal(err)
	}
	doc := func(version, tag string) []byte {
		return []byte("id: warm\nversion: " + version + "\nmodules:\n  - {id: m, service: pid, config: {tag: " + tag + "}}\n")
	}
	// workerOf fires one message and returns the worker token and tag
	// module m emitted.
	workerOf := func() (string, string) {
		t.Helper()
		r, err := n.op.FireFlow(ctx, "warm", api.FlowFireRequest{Message: json.RawMessage(`{}`), Wait: "1m"})
		if err != nil || r.Outcome != "ok" || len(r.Steps) != 1 {
			t.Fatalf("fire = %+v, %v", r, err)
		}
		run, err := n.op.Run(ctx, "pid", r.Steps[0].Run)
		if err != nil || run.Output == nil || len(run.Output.Emit) != 1 {
			t.Fatalf("run %s = %+v, %v", r.Steps[0].Run, run, err)
		}
		var m struct{ Worker, Tag string }
		if err := json.Unmarshal(run.Output.Emit[0].Message, &m); err != nil {
			t.Fatal(err)
		}
		return m.Worker, m.Tag
	}
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", doc("1.0.0", "one"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	w1, tag1 := workerOf()
	sent1, _, _ := node.ProtocolMessages(n.Node, "pid")
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", doc("1.1.0", "two"), false); err != nil {
		t.Fatal(err)
	}
	w2, tag2 := workerOf()
	sent2, _, _ := node.ProtocolMessages(n.Node, "pid")
	if tag1 != "one" || tag2 != "two" {
		t.Errorf("tags %q then %q, want one then two (the new version took over)", tag1, tag2)
	}
	if w1 == "" || w1 != w2 {
		t.Errorf("worker %q before the update, %q after; want the same warm worker", w1, w2)
	}
	if sent2-sent1 != 1 {
		t.Errorf("%d protocol messages sent to the workers for one message after the update, want 1 (its invoke; no init)", sent2-sent1)
	}
}

// TestFlowHopsChecked: the node takes only the hops a worker answered on
// the route it was sent, along an emit its run made: a hop naming a
// module of another service (a run that service never made, its actions
// and emits the worker's), an emit the run did not make, or a wire off
// the route is dropped and never recorded; the hop that holds is.
func TestFlowHopsChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	submitTagKeep(t, n)
	doc := "id: forge\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: b, service: tag, config: {tag: B}}\n  - {id: c, service: keep}\n" +
		"wires:\n  - {from: a, to: b}\n  - {from: a, to: c}\n"
	applyStart(t, n.op, doc)
	flowRun := node.NewRunID()
	runA := node.ModuleRunID(flowRun, "a", flowRun)
	hop := func(module string, emit, wire int) sandbox.Hop {
		msg := fmt.Sprintf("%s.%d.%d", runA, emit, wire)
		return sandbox.Hop{RunID: node.ModuleRunID(flowRun, module, msg), Module: module, From: runA, Emit: emit, Wire: wire,
			Exit: sandbox.Exit{Outcome: sandbox.OK, Output: []byte(`{"noop":"forged?"}`)}}
	}
	good := hop("b", 0, 0)
	other := hop("c", 0, 1)    // keep's module: another service, off the route
	noEmit := hop("b", 3, 0)   // a made one emit
	offRoute := hop("b", 0, 1) // wire 1 leads to c
	offRoute.RunID = node.ModuleRunID(flowRun, "b", fmt.Sprintf("%s.0.1", runA))
	out := contract.Output{Emit: []contract.Emit{{Port: "out", Message: json.RawMessage(`{"n":1}`)}}}
	taken := node.RecordHops(n.Node, "forge", "a", flowRun, runA, out, []int{0}, []sandbox.Hop{other, noEmit, offRoute, good})
	if !slices.Equal(taken, []string{good.RunID}) {
		t.Errorf("hops taken %q, want only %s (b's, on a's emit, along the route)", taken, good.RunID)
	}
	if _, err := n.op.Run(ctx, "tag", good.RunID); err != nil {
		t.Errorf("b's hop run %s: %v, want it recorded", good.RunID, err)
	}
	for _, h := range []sandbox.Hop{other, noEmit, offRoute} {
		svc := "tag"
		if h.Module == "c" {
			svc = "keep"
		}
		if r, err := n.op.Run(ctx, svc, h.RunID); err == nil {
			t.Errorf("hop %+v dropped, yet run %s of %s recorded: %+v", h, h.RunID, svc, r)
		}
	}
}
