package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/store"
)

// Services of the flow tests: a Node.js module that tags a message with
// what it learned of its place in the flow, a Python module that refuses
// n = 7, and a Node.js module that keeps every message it gets, in order,
// in its state (n = 0 mod 5 also goes to a port no wire leaves).
const (
	flowTagJS = `exports.decide = async (ctx) => ({ emit: [{ port: 'out', message: {
  n: ctx.message.n, via: ctx.trigger.kind + '/' + ctx.trigger.flow.module + '/' + ctx.config.tag } }] });`
	flowCheckPy = `    m = input["message"]
    if m["n"] == 7:
        raise ValueError("seven is refused")
    return {"emit": [{"port": "out", "message": m}]}
`
	flowKeepJS = `exports.decide = async (ctx) => {
  await new Promise((r) => setTimeout(r, ctx.config.sleep || 0));
  const m = ctx.message.error ? ctx.message.message : ctx.message;
  const via = ctx.message.error ? 'error from ' + ctx.message.module + ': ' + ctx.message.error.includes('seven is refused') : m.via;
  const seen = [...(ctx.state.seen || []), m.n + ':' + via];
  if (m.n % 5 === 0) return { state: { set: { seen } }, emit: [{ port: 'odd', message: ctx.message }] };
  return { state: { set: { seen } }, noop: 'kept ' + ctx.message.n };
};`
)

// submitTagKeep submits the two Node.js services of flowTagJS and
// flowKeepJS as tag and keep.
func submitTagKeep(t *testing.T, n *testNode) {
	t.Helper()
	for _, dir := range []string{
		nodeService(t, "tag", "{memory: 128Mi, timeout: 10s}", flowTagJS),
		nodeService(t, "keep", "{memory: 128Mi, timeout: 10s}", flowKeepJS),
	} {
		if _, err := n.op.Submit(context.Background(), pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
}

// submitFlowServices submits the three services of flowTagJS, flowCheckPy
// and flowKeepJS as tag, check and keep.
func submitFlowServices(t *testing.T, n *testNode) {
	t.Helper()
	ctx := context.Background()
	for _, dir := range []string{
		nodeService(t, "tag", "{memory: 128Mi, timeout: 10s}", flowTagJS),
		pythonService(t, "check", flowCheckPy),
		nodeService(t, "keep", "{memory: 128Mi, timeout: 10s}", flowKeepJS),
	} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
}

const flowV1 = "id: line\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: b, service: check}\n  - {id: c, service: keep}\n" +
	"wires:\n  - {from: a, to: b}\n  - {from: b, to: c}\n"

// applyStart applies the flow doc through c and starts it.
func applyStart(t *testing.T, c *api.Client, doc string) {
	t.Helper()
	ctx := context.Background()
	a, err := c.ApplyFlow(ctx, "application/yaml", []byte(doc), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartFlow(ctx, a.Flow.ID); err != nil {
		t.Fatal(err)
	}
}

// holdWindow waits until module 0 of flow id holds a full window of
// messages at its breakpoint.
func holdWindow(t *testing.T, n *testNode, id string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		f, err := n.op.Flow(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if f.Modules[0].Waiting == node.FlowWindow {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds not the window's %d messages after 30 s: %+v", f.Modules[0].ID, node.FlowWindow, f.Modules[0])
		}
	}
}

// seen is the keep service's state: the messages it got, in order.
func seen(t *testing.T, n *testNode) []string {
	t.Helper()
	st, err := n.op.State(context.Background(), "keep")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if raw, ok := st.Values["seen"]; ok {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// waitFlowRuns polls until flow id has recorded want runs and returns
// them, oldest first.
func waitFlowRuns(t *testing.T, n *testNode, id string, want int) []api.FlowRun {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		// An error is tried again (a stream electing its leader after a
		// node of a cluster left) and reported at the deadline.
		runs, err := n.op.FlowRuns(context.Background(), id, 1000)
		if err == nil && len(runs) >= want {
			slices.Reverse(runs)
			return runs
		}
		if time.Now().After(deadline) {
			f, _ := n.op.Flow(context.Background(), id)
			t.Fatalf("flow %s: %d runs recorded after 60s (%v), want %d; flow: %+v", id, len(runs), err, want, f)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fireStored fires req at flow id until the node stores it: a full queue
// (429) is tried again after 10 ms.
func fireStored(n *testNode, id string, req api.FlowFireRequest) (api.FlowRun, error) {
	for {
		r, err := n.op.FireFlow(context.Background(), id, req)
		if status(err) != 429 {
			return r, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFlowIdle waits until flow id has nothing queued or in flight.
func waitFlowIdle(t testing.TB, n *testNode, id string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, err := n.op.Flow(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if f.Queued == 0 && f.InFlight == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flow %s still busy after %v: %d queued, %d in flight", id, timeout, f.Queued, f.InFlight)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFlowRun runs a flow of three modules in two runtimes (Node.js,
// Python) on a real node: a stopped flow refuses messages; twelve
// messages fired without waiting each run once through every module, in
// the order they were fired (the last module's state lists them in that
// order), each module run a run of its service with the trigger kind flow
// and the module's config over the service's; the message a module fails
// on fails its flow run naming the module; a message sent to a port no
// wire leaves is recorded as dropped. Applying a new version to the
// running flow (an error wire) takes over for the next message; bad input
// changes nothing; a stopped flow refuses again.
func TestFlowRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	submitFlowServices(t, n)
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(flowV1), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.FireFlow(ctx, "line", api.FlowFireRequest{Message: json.RawMessage(`{"n":1}`)}); status(err) != 409 || !strings.Contains(err.Error(), "start it first") {
		t.Fatalf("fire at a stopped flow = %v, want 409", err)
	}
	if f, err := n.op.StartFlow(ctx, "line"); err != nil || !f.Running {
		t.Fatalf("start = %+v, %v", f, err)
	}
	if f, err := n.op.StartFlow(ctx, "line"); err != nil || !f.Running {
		t.Fatalf("start again = %+v, %v", f, err)
	}

	const msgs = 12
	ids := map[string]int{}
	for i := range msgs {
		r, err := n.op.FireFlow(ctx, "line", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		if err != nil || r.Outcome != "queued" || r.ID == "" {
			t.Fatalf("fire %d = %+v, %v", i, r, err)
		}
		ids[r.ID] = i
	}
	runs := waitFlowRuns(t, n, "line", msgs)
	for _, r := range runs {
		i, ok := ids[r.ID]
		if !ok || r.Version != "1.0.0" || r.Replayed {
			t.Errorf("flow run %+v: not one fired", r)
			continue
		}
		switch {
		case i == 7:
			if r.Outcome != "failed" || r.Module != "b" || !strings.Contains(r.Error, "module b (service check) ended") || !strings.Contains(r.Error, "seven is refused") || len(r.Steps) != 2 {
				t.Errorf("flow run of n=7 = %+v; want failed at b", r)
			}
		case r.Outcome != "ok" || len(r.Steps) != 3:
			t.Errorf("flow run of n=%d = %+v; want ok in three steps", i, r)
		case i%5 == 0 && (len(r.Dropped) != 1 || !strings.HasPrefix(r.Dropped[0], "c:odd ")):
			t.Errorf("flow run of n=%d dropped %q; want c:odd", i, r.Dropped)
		case i%5 != 0 && len(r.Dropped) != 0:
			t.Errorf("flow run of n=%d dropped %q; want nothing", i, r.Dropped)
		}
		for j, s := range r.Steps {
			if s.Module != string(rune('a'+j)) || s.Run == "" || s.Reused {
				t.Errorf("flow run of n=%d step %d = %+v", i, j, s)
			}
		}
	}
	var want []string
	for i := range msgs {
		if i != 7 {
			want = append(want, fmt.Sprintf("%d:flow/a/A", i))
		}
	}
	if got := seen(t, n); !slices.Equal(got, want) {
		t.Errorf("keep saw %q; want each message once, in order: %q", got, want)
	}
	f, err := n.op.Flow(ctx, "line")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][3]uint64{{msgs, 0, msgs}, {msgs, 1, msgs}, {msgs - 1, 0, msgs - 1}} {
		if m := f.Modules[i]; m.Ran != want[0] || m.Failed != want[1] || m.LastMinute != want[2] {
			t.Errorf("module %s ran %d, failed %d, %d in the last minute; want %v", m.ID, m.Ran, m.Failed, m.LastMinute, want)
		}
	}
	for svc, count := range map[string]int{"tag": msgs, "check": msgs, "keep": msgs - 1} {
		rs, err := n.op.Runs(ctx, svc, 100)
		if err != nil || len(rs) != count {
			t.Fatalf("runs of %s = %d, %v; want %d", svc, len(rs), err, count)
		}
		for _, r := range rs {
			if r.Trigger.Kind != "flow" || r.Trigger.Flow == nil || r.Trigger.Flow.Flow != "line" || r.Trigger.Flow.Version != "1.0.0" || r.Trigger.Flow.Run == "" {
				t.Errorf("run %s of %s: trigger %+v, want a flow trigger", r.ID, svc, r.Trigger)
			}
		}
	}

	// Re-runs of the failed flow run (n=7): from b, its failing module,
	// with what a sent it; from a, with the flow's input. Both fail at b
	// again. A flow run that ended ok, or a module it did not reach, is
	// refused.
	var failed, okRun string
	for id, i := range ids {
		if i == 7 {
			failed = id
		} else {
			okRun = id
		}
	}
	rr, err := n.op.RerunFlow(ctx, "line", failed, api.FlowRerunRequest{Wait: "30s"})
	if err != nil || rr.RerunOf != failed || rr.Outcome != "failed" || rr.Module != "b" || len(rr.Steps) != 1 || rr.Steps[0].Module != "b" || compact(rr.Input) != `{"n":7,"via":"flow/a/A"}` {
		t.Fatalf("rerun %s = %+v, %v; want failed at b again, from a's output", failed, rr, err)
	}
	rr, err = n.op.RerunFlow(ctx, "line", failed, api.FlowRerunRequest{From: "a", Wait: "30s"})
	if err != nil || rr.RerunOf != failed || rr.Outcome != "failed" || len(rr.Steps) != 2 || compact(rr.Input) != `{"n":7}` {
		t.Fatalf("rerun %s --from a = %+v, %v", failed, rr, err)
	}
	if _, err := n.op.RerunFlow(ctx, "line", failed, api.FlowRerunRequest{From: "c"}); status(err) != 400 || !strings.Contains(err.Error(), `did not reach module "c" (it reached: a, b)`) {
		t.Errorf("rerun --from c = %v, want 400", err)
	}
	if _, err := n.op.RerunFlow(ctx, "line", okRun, api.FlowRerunRequest{}); status(err) != 409 {
		t.Errorf("rerun of an ok flow run = %v, want 409", err)
	}
	if _, err := n.op.RerunFlow(ctx, "line", "nope", api.FlowRerunRequest{}); status(err) != 404 {
		t.Errorf("rerun of no flow run = %v, want 404", err)
	}

	// A new version while it runs: b's failures go to e.
	v2 := strings.Replace(flowV1, "version: 1.0.0", "version: 1.1.0", 1) + "  - {from: 'b:error', to: e}\n"
	v2 = strings.Replace(v2, "  - {id: c, service: keep}\n", "  - {id: c, service: keep}\n  - {id: e, service: keep}\n", 1)
	if a, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(v2), false); err != nil || !a.Flow.Running || a.Flow.Version != "1.1.0" {
		t.Fatalf("apply v2 to the running flow = %+v, %v", a, err)
	}
	r, err := n.op.FireFlow(ctx, "line", api.FlowFireRequest{Message: json.RawMessage(`{"n":7}`), Wait: "30s"})
	if err != nil || r.Outcome != "ok" || r.Version != "1.1.0" || len(r.Steps) != 3 || r.Steps[2].Module != "e" {
		t.Fatalf("n=7 through v2 = %+v, %v; want ok through the error wire to e", r, err)
	}
	if got := seen(t, n); len(got) != len(want)+1 || got[len(got)-1] != "7:error from b: true" {
		t.Errorf("keep's last message = %q; want n=7 with b's error", got)
	}
	// The failed flow run re-run in the new version goes through e too.
	if rr, err := n.op.RerunFlow(ctx, "line", failed, api.FlowRerunRequest{Wait: "30s"}); err != nil || rr.Outcome != "ok" || rr.Version != "1.1.0" || len(rr.Steps) != 2 || rr.Steps[1].Module != "e" {
		t.Fatalf("rerun in v2 = %+v, %v", rr, err)
	}
	// A bad version changes nothing running.
	bad := strings.Replace(v2, "version: 1.1.0", "version: 1.2.0", 1) + "  - {from: c, to: zz}\n  - {from: 'e:nope', to: a}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(bad), false); status(err) != 400 || !strings.Contains(err.Error(), `no module "zz"`) || !strings.Contains(err.Error(), `no output port "nope"`) {
		t.Fatalf("a bad version of the running flow = %v, want 400 with every problem", err)
	}
	if f, err := n.op.Flow(ctx, "line"); err != nil || !f.Running || f.Version != "1.1.0" {
		t.Fatalf("after a bad version: %+v, %v; want 1.1.0 running", f, err)
	}

	// A message sent to one module only.
	r, err = n.op.FireFlow(ctx, "line", api.FlowFireRequest{Message: json.RawMessage(`{"n":21,"via":"direct"}`), Module: "c", Wait: "30s"})
	if err != nil || r.Outcome != "ok" || len(r.Steps) != 1 || r.Steps[0].Module != "c" {
		t.Fatalf("a message to c = %+v, %v", r, err)
	}

	// Bad input changes nothing.
	before := seen(t, n)
	for _, tc := range []struct {
		req  api.FlowFireRequest
		want string
		code int
	}{
		{api.FlowFireRequest{Module: "zz"}, `module: flow line (version 1.1.0) has no module "zz"`, 400},
		{api.FlowFireRequest{Wait: "10m"}, "wait", 400},
		{api.FlowFireRequest{Wait: "soon"}, "wait", 400},
		{api.FlowFireRequest{Message: json.RawMessage(`"` + strings.Repeat("x", 1<<20) + `"`)}, "larger than", 413},
	} {
		if _, err := n.op.FireFlow(ctx, "line", tc.req); status(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("fire (module %q, wait %q) = %v; want %d naming %q", tc.req.Module, tc.req.Wait, err, tc.code, tc.want)
		}
	}
	if _, err := n.op.FireFlow(ctx, "nope", api.FlowFireRequest{}); status(err) != 404 {
		t.Errorf("fire at no flow = %v, want 404", err)
	}
	if _, err := n.op.RerunFlow(ctx, "line", failed, api.FlowRerunRequest{From: "zz"}); status(err) != 400 {
		t.Errorf("rerun --from zz = %v, want 400", err)
	}
	if got := seen(t, n); !slices.Equal(got, before) {
		t.Errorf("bad fires changed keep's state: %q → %q", before, got)
	}

	if f, err := n.op.StopFlow(ctx, "line"); err != nil || f.Running || f.InFlight != 0 {
		t.Fatalf("stop = %+v, %v", f, err)
	}
	if _, err := n.op.FireFlow(ctx, "line", api.FlowFireRequest{}); status(err) != 409 {
		t.Errorf("fire after stop = %v, want 409", err)
	}
	if rs, err := n.op.FlowRuns(ctx, "line", 1000); err != nil || len(rs) != msgs+5 {
		t.Errorf("flow runs = %d, %v; want %d", len(rs), err, msgs+5)
	}
	if err := n.op.RemoveFlow(ctx, "line"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.FlowRuns(ctx, "line", 10); status(err) != 404 {
		t.Errorf("runs of a removed flow = %v, want 404", err)
	}
}

// waitRunCount polls until service has recorded at least k runs (of its
// last 100), for 60 s at most.
func waitRunCount(t *testing.T, n *testNode, service string, k int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rs, err := n.op.Runs(context.Background(), service, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) >= k {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s ran %d times in 60s, want %d", service, len(rs), k)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFlowReplay stops a node while its flow has messages in flight (the
// last module is slow) and starts it again on the same data: the flow runs
// that had not ended run again, reusing the module runs recorded before
// the stop, so every message passes every module exactly once.
func TestFlowReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	data := t.TempDir()
	n := startNode(t, func(c *node.Config) { c.Data = data })
	requireProcess(t, n)
	submitFlowServices(t, n)
	doc := strings.Replace(flowV1, "{id: c, service: keep}", "{id: c, service: keep, config: {sleep: 150}}", 1)
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "line"); err != nil {
		t.Fatal(err)
	}
	const msgs = 8
	for i := range msgs {
		if _, err := n.op.FireFlow(ctx, "line", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i+20))}); err != nil {
			t.Fatal(err)
		}
	}
	// Stop once b has passed messages on that c has not taken yet.
	waitRunCount(t, n, "check", 3)
	n.Close()
	os.RemoveAll(filepath.Join(data, "services"))

	n2 := startNode(t, func(c *node.Config) { c.Data = data })
	runs := waitFlowRuns(t, n2, "line", msgs)
	replayed, reused := 0, 0
	for _, r := range runs {
		if r.Outcome != "ok" || len(r.Steps) != 3 {
			t.Errorf("flow run %+v; want ok in three steps", r)
		}
		if r.Replayed {
			replayed++
		}
		for _, s := range r.Steps {
			if s.Reused {
				reused++
			}
		}
	}
	if replayed == 0 || reused == 0 {
		t.Errorf("%d flow runs replayed, %d module runs reused; want some of each (the stop came mid-flow)", replayed, reused)
	}
	var want []string
	for i := range msgs {
		want = append(want, fmt.Sprintf("%d:flow/a/A", i+20))
	}
	if got := seen(t, n2); !slices.Equal(got, want) {
		t.Errorf("keep saw %q; want each message once, in order: %q", got, want)
	}
	for _, svc := range []string{"tag", "check", "keep"} {
		if rs, err := n2.op.Runs(ctx, svc, 100); err != nil || len(rs) != msgs {
			t.Errorf("runs of %s = %d, %v; want %d (none twice)", svc, len(rs), err, msgs)
		}
	}
}

// TestFlowBreakpoint holds a flow's messages at breakpoints and steps them
// through, module by module, while another flow keeps running: each step
// runs the held messages one module further and answers with what each
// took and gave; a step with nothing held answers with nothing; a stop
// does not wait for held messages, which are held again after the next
// start; removing the breakpoints lets everything go on. Breakpoints are
// the operator's; bad input changes nothing.
func TestFlowBreakpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	submitTagKeep(t, n)
	doc := "id: dbg\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: c, service: keep}\nwires:\n  - {from: a, to: c}\n"
	other := "id: other\nversion: 1.0.0\nmodules:\n  - {id: t, service: tag, config: {tag: T}}\n"
	for _, d := range []string{doc, other} {
		if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(d), false); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"dbg", "other"} {
		if _, err := n.op.StartFlow(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.op.StepFlow(ctx, "dbg"); status(err) != 409 || !strings.Contains(err.Error(), "no breakpoint") {
		t.Errorf("step without breakpoints = %v, want 409", err)
	}
	if _, err := n.op.SetBreakpoint(ctx, "dbg", "zz", true); status(err) != 400 || !strings.Contains(err.Error(), `has no module "zz"`) {
		t.Errorf("break at no module = %v, want 400", err)
	}
	tok, err := n.op.CreateToken(ctx, "sue", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(n.Addr(), tok.Secret).SetBreakpoint(ctx, "dbg", "a", true); status(err) != 403 {
		t.Errorf("a submitter's break = %v, want 403", err)
	}
	for _, m := range []string{"a", "c"} {
		if f, err := n.op.SetBreakpoint(ctx, "dbg", m, true); err != nil || !f.Modules[map[string]int{"a": 0, "c": 1}[m]].Breakpoint {
			t.Fatalf("break dbg/%s = %+v, %v", m, f, err)
		}
	}
	fire := func(i int) {
		t.Helper()
		if _, err := n.op.FireFlow(ctx, "dbg", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	// held waits until module m of dbg holds k messages and returns them.
	held := func(m string, k int) []api.FlowHeld {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			f, err := n.op.Flow(ctx, "dbg")
			if err != nil {
				t.Fatal(err)
			}
			for _, fm := range f.Modules {
				if fm.ID == m && len(fm.Held) == k && fm.Waiting == k {
					return fm.Held
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds not %d messages after 30s: %+v", m, k, f.Modules)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	step := func(wantModule string, wantInputs int) api.FlowModuleStep {
		t.Helper()
		r, err := n.op.StepFlow(ctx, "dbg")
		if err != nil {
			t.Fatal(err)
		}
		if wantModule == "" {
			if len(r) != 0 {
				t.Fatalf("step with nothing held = %+v, want nothing", r)
			}
			return api.FlowModuleStep{}
		}
		ms, ok := r[wantModule]
		if len(r) != 1 || !ok || len(ms.InputStates) != wantInputs || len(ms.OutputStates) != wantInputs || len(ms.Errors) != wantInputs || len(ms.Runs) != wantInputs {
			t.Fatalf("step = %+v; want %d messages of %s", r, wantInputs, wantModule)
		}
		return ms
	}

	fire(1)
	fire(5)
	if h := held("a", 2); compact(h[0].Input) != `{"n":1}` || compact(h[1].Input) != `{"n":5}` {
		t.Fatalf("held at a: %+v", h)
	}
	// Another flow runs meanwhile.
	if r, err := n.op.FireFlow(ctx, "other", api.FlowFireRequest{Message: json.RawMessage(`{"n":0}`), Wait: "30s"}); err != nil || r.Outcome != "ok" {
		t.Fatalf("the other flow = %+v, %v", r, err)
	}
	// Step 1: a runs both; their outputs go to c, held there.
	ms := step("a", 2)
	for i, want := range []string{`{"n":1,"via":"flow/a/A"}`, `{"n":5,"via":"flow/a/A"}`} {
		if o := ms.OutputStates[i]; len(o) != 1 || o[0].Port != "out" || compact(o[0].Message) != want || len(o[0].To) != 1 || o[0].To[0] != "c" || ms.Errors[i] != "" || ms.Runs[i] == "" {
			t.Errorf("a's step %d: in %s, out %+v, error %q", i, ms.InputStates[i], o, ms.Errors[i])
		}
	}
	held("c", 2)
	if got := seen(t, n); len(got) != 0 {
		t.Fatalf("keep ran before its step: %q", got)
	}
	// Step 2: c runs both; n=5 goes to a port no wire leaves.
	ms = step("c", 2)
	if len(ms.OutputStates[0]) != 0 || len(ms.OutputStates[1]) != 1 || ms.OutputStates[1][0].Port != "odd" || len(ms.OutputStates[1][0].To) != 0 {
		t.Errorf("c's step: %+v", ms)
	}
	if got := seen(t, n); !slices.Equal(got, []string{"1:flow/a/A", "5:flow/a/A"}) {
		t.Errorf("keep after step 2: %q", got)
	}
	// Steps 3 to 5: one more message through, then nothing held.
	fire(2)
	held("a", 1)
	step("a", 1)
	held("c", 1)
	step("c", 1)
	step("", 0)
	if rs := waitFlowRuns(t, n, "dbg", 3); rs[2].Outcome != "ok" || len(rs[2].Steps) != 2 {
		t.Errorf("flow runs after the steps: %+v", rs)
	}

	// A stop does not wait for a held message; the next start holds it again.
	fire(3)
	held("a", 1)
	start := time.Now()
	if _, err := n.op.StopFlow(ctx, "dbg"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %v with a message held", d)
	}
	if _, err := n.op.StartFlow(ctx, "dbg"); err != nil {
		t.Fatal(err)
	}
	held("a", 1)

	// Resume: without breakpoints everything goes on.
	for _, m := range []string{"a", "c"} {
		if _, err := n.op.SetBreakpoint(ctx, "dbg", m, false); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := n.op.FireFlow(ctx, "dbg", api.FlowFireRequest{Message: json.RawMessage(`{"n":4}`), Wait: "30s"}); err != nil || r.Outcome != "ok" || len(r.Steps) != 2 {
		t.Fatalf("fire after unbreak = %+v, %v", r, err)
	}
	rs := waitFlowRuns(t, n, "dbg", 5)
	if got := seen(t, n); !slices.Equal(got, []string{"1:flow/a/A", "5:flow/a/A", "2:flow/a/A", "3:flow/a/A", "4:flow/a/A"}) {
		t.Errorf("keep at the end: %q; want every message once, in order", got)
	}
	replayed := 0
	for _, r := range rs {
		if r.Outcome != "ok" {
			t.Errorf("flow run %+v", r)
		}
		if r.Replayed {
			replayed++
		}
	}
	if replayed != 1 {
		t.Errorf("%d flow runs replayed, want 1 (the one held over the stop)", replayed)
	}
}

// compact is raw without the API's indentation.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// TestFlowChain passes messages through a flow of four modules in three
// runtimes, wasm → Node.js → Python → wasm (the wasm modules one Go
// reactor, mirror), fired by four callers at once: every message passes
// every module exactly once (one run per module and flow run), and each
// module runs them in the order the module before it did (FIFO per wire).
// 300 messages; 10,000 with
// ANDROMEDA_SOAK=1.
func TestFlowChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	msgs := 300
	if os.Getenv("ANDROMEDA_SOAK") != "" {
		msgs = 10_000
	}
	n := startNode(t, func(c *node.Config) { c.Runs.PerService = int64(2*msgs + 100) })
	requireProcess(t, n)
	py := t.TempDir()
	for file, text := range map[string]string{
		"andromeda.yaml": "name: pycheck\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: server\n" +
			"triggers:\n  - {kind: manual}\nresources: {memory: 128Mi, timeout: 10s}\ncapabilities: {network: none}\n",
		"main.py": "def handle(input):\n    n = input[\"message\"][\"n\"]\n    return {\"emit\": [{\"port\": \"out\", \"message\": {\"noop\": \"passed %d\" % n}}]}\n",
	} {
		if err := os.WriteFile(filepath.Join(py, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{
		mirrorService(t),
		nodeService(t, "jsrelay", "{memory: 128Mi, timeout: 10s}", relayJS),
		py,
	} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	doc := "id: chain\nversion: 1.0.0\nmodules:\n  - {id: w1, service: mirror}\n  - {id: js, service: jsrelay}\n  - {id: py, service: pycheck}\n  - {id: w2, service: mirror}\n" +
		"wires:\n  - {from: w1, to: js}\n  - {from: js, to: py}\n  - {from: py, to: w2}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "chain"); err != nil {
		t.Fatal(err)
	}
	fireFromFour(t, n, "chain", msgs, func(i int) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"emit":[{"port":"out","message":{"n":%d}}]}`, i))
	})
	if t.Failed() {
		t.FailNow()
	}
	waitFlowIdle(t, n, "chain", time.Duration(msgs)*20*time.Millisecond+time.Minute)

	// Each module's runs in the order they ran, as their flow runs' ids.
	order := map[string][]string{}
	outcomes := map[string]int{}
	for _, svc := range []string{"mirror", "jsrelay", "pycheck"} {
		var runs []api.Run
		q := api.RunQuery{Limit: 1000}
		for {
			page, err := n.op.ListRuns(ctx, svc, q)
			if err != nil {
				t.Fatal(err)
			}
			runs = append(runs, page.Runs...)
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
		slices.SortFunc(runs, func(a, b api.Run) int { return a.Start.Compare(b.Start) })
		for _, r := range runs {
			if r.Trigger.Flow == nil {
				t.Fatalf("run %s of %s has no flow trigger", r.ID, svc)
			}
			order[r.Trigger.Flow.Module] = append(order[r.Trigger.Flow.Module], r.Trigger.Flow.Run)
			outcomes[r.Trigger.Flow.Module+" "+r.Outcome]++
		}
	}
	for _, m := range []string{"w1", "js", "py", "w2"} {
		seen := map[string]bool{}
		for _, fr := range order[m] {
			if seen[fr] {
				t.Fatalf("module %s ran flow run %s twice", m, fr)
			}
			seen[fr] = true
		}
		if len(order[m]) != msgs {
			t.Errorf("module %s ran %d messages, want %d", m, len(order[m]), msgs)
		}
	}
	for _, w := range [][2]string{{"w1", "js"}, {"js", "py"}, {"py", "w2"}} {
		if !slices.Equal(order[w[0]], order[w[1]]) {
			t.Errorf("wire %s → %s: %s ran its messages in another order than %s sent them", w[0], w[1], w[1], w[0])
		}
	}
	want := map[string]int{"w1 ok": msgs, "js ok": msgs, "py ok": msgs, "w2 noop": msgs}
	if !maps.Equal(outcomes, want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
	runs, err := n.op.FlowRuns(ctx, "chain", 1000)
	if err != nil || len(runs) != min(msgs, 1000) {
		t.Fatalf("flow runs = %d, %v", len(runs), err)
	}
	for _, r := range runs {
		if r.Outcome != "ok" || len(r.Steps) != 4 {
			t.Fatalf("flow run %+v", r)
		}
	}
}

// TestFlowContext: a flow's context starts as its document's, every
// module run reads it (flow_context) and writes it key by key with
// compare-and-swap: writes in turn all count; two modules that read the
// same key at once and both write it, one wins and the other's write is
// refused (its flow run fails naming the module and the key), nothing of
// it applied; the context carries over to a new version; a run fired
// outside a flow may not write it; removing the flow removes it.
func TestFlowContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	count := `exports.decide = async (ctx) => {
  await new Promise((r) => setTimeout(r, ctx.config.sleep || 0));
  const count = ((ctx.flow_context || {}).count || 0) + 1;
  const by = 'by_' + (ctx.trigger.flow ? ctx.trigger.flow.module : 'none');
  return { flow_context: { set: { count, [by]: count } }, noop: 'counted ' + count };
};`
	if _, err := n.op.Submit(ctx, pack(t, nodeService(t, "counter", "{memory: 128Mi, timeout: 10s}", count))); err != nil {
		t.Fatal(err)
	}
	doc := "id: tally\nversion: 1.0.0\ncontext: {count: 10, note: kept}\nmodules:\n  - {id: a, service: counter}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "tally"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r, err := n.op.FireFlow(ctx, "tally", api.FlowFireRequest{Wait: "30s"}); err != nil || r.Outcome != "ok" {
			t.Fatalf("fire = %+v, %v", r, err)
		}
	}
	context := func() map[string]string {
		t.Helper()
		f, err := n.op.Flow(ctx, "tally")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for k, v := range f.Context {
			out[k] = compact(v)
		}
		return out
	}
	if c := context(); !maps.Equal(c, map[string]string{"count": "13", "note": `"kept"`, "by_a": "13"}) {
		t.Fatalf("context after three runs = %v", c)
	}

	// Two entry modules read count at once and both write it.
	v2 := "id: tally\nversion: 1.1.0\ncontext: {count: 0}\nmodules:\n  - {id: a, service: counter, config: {sleep: 300}}\n  - {id: b, service: counter, config: {sleep: 300}}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(v2), false); err != nil {
		t.Fatal(err)
	}
	if c := context(); c["count"] != "13" {
		t.Fatalf("context after the update = %v; want it carried over", c)
	}
	r, err := n.op.FireFlow(ctx, "tally", api.FlowFireRequest{Wait: "30s"})
	if err != nil || r.Outcome != "failed" || !strings.Contains(r.Error, `flow_context: key "by_`) && !strings.Contains(r.Error, `flow_context: key "count" changed since the run read it`) || len(r.Steps) != 2 {
		t.Fatalf("two writers at once = %+v, %v; want one refused", r, err)
	}
	c := context()
	if c["count"] != "14" || (c["by_a"] == "14") == (c["by_b"] == "14") {
		t.Errorf("context after the race = %v; want count 14 written by one module only", c)
	}
	var lost string
	for _, s := range r.Steps {
		if s.Outcome == "conflict" {
			lost = s.Module
		}
	}
	if lost == "" || r.Module != lost || c["by_"+lost] == "14" {
		t.Errorf("the refused module is %q, the run failed at %q; context %v", lost, r.Module, c)
	}

	// Outside a flow.
	n.op.Fire(ctx, "counter", nil)
	runs, err := n.op.Runs(ctx, "counter", 1)
	if err != nil || len(runs) != 1 || runs[0].Outcome != "error" || !strings.Contains(runs[0].Error, "only a flow module's run may change its flow's context") {
		t.Errorf("the fire's run = %+v, %v", runs, err)
	}

	if err := n.op.RemoveFlow(ctx, "tally"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "tally"); err != nil {
		t.Fatal(err)
	}
	if c := context(); !maps.Equal(c, map[string]string{"count": "10", "note": `"kept"`}) {
		t.Errorf("context of the flow applied again = %v; want the document's", c)
	}
}

// TestFlowContextStoredBehind: module runs write the flow context in
// memory and the store takes the writes behind them, but a flow run is
// answered only once its write is stored; one whose write finds the
// stored context changed by another writer fails saying so, and the flow
// goes on from what the other writer stored.
func TestFlowContextStoredBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	count := `exports.decide = async (ctx) => ({ flow_context: { set: { count: (ctx.flow_context.count || 0) + 1 } }, noop: 'counted' });`
	if _, err := n.op.Submit(ctx, pack(t, statelessService(t, "count", "node", count, 1))); err != nil {
		t.Fatal(err)
	}
	doc := "id: behind\nversion: 1.0.0\ncontext: {count: 0}\nmodules:\n  - {id: a, service: count}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "behind"); err != nil {
		t.Fatal(err)
	}
	stored := func() string {
		t.Helper()
		f, err := n.op.Flow(ctx, "behind")
		if err != nil {
			t.Fatal(err)
		}
		return compact(f.Context["count"])
	}
	for i := range 3 {
		r, err := n.op.FireFlow(ctx, "behind", api.FlowFireRequest{Wait: "30s"})
		if err != nil || r.Outcome != "ok" {
			t.Fatalf("fire = %+v, %v", r, err)
		}
		// Answered: its write is in the store.
		if got := stored(); got != fmt.Sprint(i+1) {
			t.Fatalf("stored count after fire %d = %s", i+1, got)
		}
	}
	if err := node.WriteFlowContext(ctx, n.Node, "behind", map[string][]byte{"count": []byte("100")}); err != nil {
		t.Fatal(err)
	}
	r, err := n.op.FireFlow(ctx, "behind", api.FlowFireRequest{Wait: "30s"})
	if err != nil || r.Outcome != "failed" || !strings.Contains(r.Error, "written meanwhile by another writer") {
		t.Fatalf("the fire whose write met another writer's = %+v, %v; want failed, saying so", r, err)
	}
	if got := stored(); got != "100" {
		t.Errorf("stored count = %s, want the other writer's 100", got)
	}
	r, err = n.op.FireFlow(ctx, "behind", api.FlowFireRequest{Wait: "30s"})
	if err != nil || r.Outcome != "ok" || stored() != "101" {
		t.Errorf("the next fire = %+v, %v, count %s; want ok, 101 (counting on from the stored context)", r, err, stored())
	}
}

// TestFlowHotUpdate applies a new version of a running flow every second
// (8 times at least) while messages flow in, offered open-loop (10 s at
// 100 messages/s; 30 s at 1,000 with ANDROMEDA_SOAK=1), alternating a
// version with a middle module b (a → b inside relay's worker) and one
// without it. The node takes at least 90% of what is offered (each fire
// stores its message before it answers). Nothing is lost or run twice:
// every message fired has one
// flow run, each module ran each flow run at most once, the context's
// counter (written by the last module) counts every message that reached
// it; and the only failed flow runs are messages sent to b while the
// version without b was the one taking them, each saying so.
func TestFlowHotUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dur, rate := 10*time.Second, 100
	if os.Getenv("ANDROMEDA_SOAK") != "" {
		dur, rate = 30*time.Second, 1000
	}
	n := startNode(t, func(c *node.Config) { c.Runs.PerService = int64(4*rate*int(dur.Seconds()) + 100) })
	requireProcess(t, n)
	tally := `exports.decide = async (ctx) => ({ flow_context: { set: { count: (ctx.flow_context.count || 0) + 1 } }, noop: 'counted' });`
	for _, dir := range []string{
		statelessService(t, "relay", "node", relayJS, 4), // a → b inside its worker
		statelessService(t, "tally", "node", tally, 1),   // writes the flow context, not service state
	} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	version := func(k int) string {
		if k%2 == 1 {
			return fmt.Sprintf("id: hot\nversion: 1.0.%d\ncontext: {count: 0}\nmodules:\n  - {id: a, service: relay}\n  - {id: b, service: relay}\n  - {id: c, service: tally}\n"+
				"wires:\n  - {from: a, to: b}\n  - {from: b, to: c}\n", k)
		}
		return fmt.Sprintf("id: hot\nversion: 1.0.%d\ncontext: {count: 0}\nmodules:\n  - {id: a, service: relay}\n  - {id: c, service: tally}\nwires:\n  - {from: a, to: c}\n", k)
	}
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(version(0)), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "hot"); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	fired := map[string]string{} // flow run → the module it was sent to ("" for the entries)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Open loop: message k is due rate·k after the start, whoever sends
	// it, so a slow answer delays no message but its own; enough callers
	// that the rate is the node's to keep, not theirs (and fewer than the
	// node's connections per address, 64 by default).
	began := time.Now()
	var issued, sent atomic.Int64
	period := time.Second / time.Duration(rate)
	for range 32 {
		wg.Go(func() {
			for {
				k := issued.Add(1) - 1
				if d := time.Until(began.Add(time.Duration(k) * period)); d > 0 {
					select {
					case <-stop:
						return
					case <-time.After(d):
					}
				}
				select {
				case <-stop:
					return
				default:
				}
				module := ""
				if k%10 == 9 {
					module = "b"
				}
				sent.Add(1)
				r, err := fireStored(n, "hot", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"k":%d}`, k)), Module: module})
				if status(err) == 400 && module == "b" {
					continue // b is not in the version applied now: refused at the door, nothing stored
				}
				if err != nil {
					t.Errorf("fire: %v", err)
					return
				}
				mu.Lock()
				fired[r.ID] = module
				mu.Unlock()
			}
		})
	}
	updates := 0
	// At least 8 updates however slow the machine, one a second.
	for end := time.Now().Add(dur); updates < 8 || time.Now().Before(end); {
		time.Sleep(time.Second)
		updates++
		if a, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(version(updates)), false); err != nil || !a.Flow.Running {
			t.Errorf("update %d = %+v, %v", updates, a, err)
		}
	}
	close(stop)
	wg.Wait()
	firing := time.Since(began)
	offered := sent.Load()
	var backlog uint64
	if f, err := n.op.Flow(ctx, "hot"); err == nil {
		backlog = f.Queued
	}
	idle := time.Now()
	waitFlowIdle(t, n, "hot", 2*time.Minute)
	t.Logf("offered %d messages in %v (%.0f/s of %d/s scheduled); %d waiting when the firing stopped, all run %v later",
		offered, firing.Round(time.Millisecond), float64(offered)/firing.Seconds(), rate, backlog, time.Since(idle).Round(time.Millisecond))
	if offered < int64(0.9*firing.Seconds()*float64(rate)) {
		t.Errorf("the node took %d messages in %v: below 90%% of the %d/s offered", offered, firing, rate)
	}

	runs, err := n.op.FlowRuns(ctx, "hot", 1000)
	if err != nil {
		t.Fatal(err)
	}
	// FlowRuns shows the last 1,000; every fired one must be recorded:
	// page through the store by listing each module's runs instead.
	recorded := map[string]api.FlowRun{}
	for _, r := range runs {
		recorded[r.ID] = r
	}
	reached := map[string]map[string]bool{} // module → flow runs
	for _, svc := range []string{"relay", "tally"} {
		q := api.RunQuery{Limit: 1000}
		for {
			page, err := n.op.ListRuns(ctx, svc, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Runs {
				m, fr := r.Trigger.Flow.Module, r.Trigger.Flow.Run
				if reached[m] == nil {
					reached[m] = map[string]bool{}
				}
				if reached[m][fr] {
					t.Fatalf("module %s ran flow run %s twice", m, fr)
				}
				reached[m][fr] = true
				if _, ok := fired[fr]; !ok {
					t.Fatalf("a run of flow run %s, which was not fired", fr)
				}
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
	}
	toB, lostB := 0, 0
	for id, module := range fired {
		if module == "b" {
			toB++
			if !reached["b"][id] {
				lostB++ // taken by a version without b: a dead letter
			}
			continue
		}
		if !reached["a"][id] || !reached["c"][id] {
			t.Errorf("flow run %s (to the entries) did not reach both a and c", id)
		}
	}
	dead := map[string]bool{}
	for id, r := range recorded {
		switch {
		case r.Outcome == "ok" && !r.DeadLetter:
		case fired[id] == "b" && strings.Contains(r.Error, "does not have") && r.DeadLetter:
			dead[id] = true
		default:
			t.Errorf("flow run %+v failed (or is marked a dead letter wrongly)", r)
		}
	}
	// The dead-letter list is those, among the last 1,000 flow runs.
	listed, err := n.op.FlowDeadLetters(ctx, "hot", 1000)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]bool{}
	for _, r := range runs[max(len(runs)-1000, 0):] {
		last[r.ID] = true
	}
	want := 0
	for id := range dead {
		if last[id] {
			want++
		}
	}
	if len(listed) != want {
		t.Errorf("%d dead letters listed, want the %d among the last 1,000 flow runs", len(listed), want)
	}
	for _, r := range listed {
		if !dead[r.ID] {
			t.Errorf("dead letter listed: %+v, not one", r)
		}
	}
	f, err := n.op.Flow(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := compact(f.Context["count"]), fmt.Sprint(len(reached["c"])); got != want {
		t.Errorf("context count = %s; c ran %s messages", got, want)
	}
	t.Logf("%d updates in %v, %d messages fired (%.0f/s; %d to b, %d of them dead letters), %d reached c",
		updates, firing.Round(time.Millisecond), len(fired), float64(len(fired))/firing.Seconds(), toB, lostB, len(reached["c"]))
	if len(fired) < 100 {
		t.Errorf("only %d messages fired during the updates", len(fired))
	}
}

// TestFlowWaitingBound: messages waiting at a flow's modules are held in
// memory up to a bound. A module that keeps emitting large messages to a
// module whose breakpoint holds them fails its flow run once the waiting
// messages would pass 64 MiB, saying so, and the node stays up; removing
// the breakpoint lets the flow run end.
func TestFlowWaitingBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	big := `exports.decide = async (ctx) => ({ emit: [{ port: 'out', message: { pad: 'x'.repeat(900 * 1024) } }] });`
	for _, dir := range []string{
		nodeService(t, "big", "{memory: 256Mi, timeout: 10s}", big),
		nodeService(t, "relay", "{memory: 256Mi, timeout: 10s}", relayJS),
	} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	doc := "id: flood\nversion: 1.0.0\nmodules:\n  - {id: a, service: big}\n  - {id: b, service: relay}\n" +
		"wires:\n  - {from: a, to: b}\n  - {from: a, to: a, loop: 500}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.SetBreakpoint(ctx, "flood", "b", true); err != nil {
		t.Fatal(err)
	}
	if f, err := n.op.StartFlow(ctx, "flood"); err != nil || !f.Modules[1].Breakpoint {
		t.Fatalf("start = %+v, %v; want b's breakpoint kept", f, err)
	}
	r, err := n.op.FireFlow(ctx, "flood", api.FlowFireRequest{Message: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	// a stops once b holds about 64 MiB: about 72 messages of 900 KiB.
	deadline := time.Now().Add(90 * time.Second)
	var held int
	var lastRan uint64
	for still := 0; still < 3; { // a has stopped: the same count three polls in a row
		time.Sleep(300 * time.Millisecond)
		f, err := n.op.Flow(ctx, "flood")
		if err != nil {
			t.Fatal(err)
		}
		held = f.Modules[1].Waiting
		if a := f.Modules[0]; a.Waiting == 0 && a.Ran > 0 && a.Ran == lastRan {
			still++
		} else {
			still, lastRan = 0, a.Ran
		}
		if time.Now().After(deadline) {
			t.Fatalf("a still runs after 90 s: %+v", f.Modules)
		}
	}
	if held < 60 || held > 75 {
		t.Errorf("b holds %d messages of 900 KiB; want about 72 (64 MiB)", held)
	}
	if err := n.Ready(); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	if _, err := n.op.SetBreakpoint(ctx, "flood", "b", false); err != nil {
		t.Fatal(err)
	}
	runs := waitFlowRuns(t, n, "flood", 1)
	if fr := runs[0]; fr.ID != r.ID || fr.Outcome != "failed" || fr.Module != "a" || !strings.Contains(fr.Error, "would make the messages waiting at the flow's modules pass 64 MiB") {
		t.Errorf("flow run = %+v; want failed at a over the bound", fr)
	}
}

// TestFlowRecordLate: a module's run the store refuses (a leader election,
// a disk briefly full) is recorded late by the node; the flow's message
// waits for that record, then goes on: the flow run ends ok, the module
// ran once, and the messages keep their order.
func TestFlowRecordLate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	submitFlowServices(t, n)
	const spec = "id: late\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: c, service: keep}\nwires:\n  - {from: a, to: c}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(spec), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	// Every attempt the run's caller makes fails; the node's retry later
	// is the first the store takes.
	var mu sync.Mutex
	refused := map[string]int{}
	node.FailRecords(n.Node, func(r store.Run) error {
		if r.Service != "tag" {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if refused[r.ID]++; refused[r.ID] <= 3 {
			return errors.New("nats: no response from stream")
		}
		return nil
	})
	const msgs = 3
	var fired []string
	for i := range msgs {
		r, err := n.op.FireFlow(ctx, "late", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		fired = append(fired, r.ID)
	}
	runs := waitFlowRuns(t, n, "late", msgs)
	for _, r := range runs {
		if r.Outcome != "ok" || len(r.Steps) != 2 {
			t.Errorf("flow run %s = %s (%s) in %d steps; want ok in two", r.ID, r.Outcome, r.Error, len(r.Steps))
		}
	}
	mu.Lock()
	if len(refused) != msgs {
		t.Errorf("the store refused the runs of %d messages, want %d: the fault did not apply", len(refused), msgs)
	}
	mu.Unlock()
	tags, err := n.op.Runs(ctx, "tag", 100)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range tags {
		if r.Trigger.Flow != nil {
			per[r.Trigger.Flow.Run]++
		}
	}
	for _, id := range fired {
		if per[id] != 1 {
			t.Errorf("module a recorded %d runs of flow run %s, want 1", per[id], id)
		}
	}
	if got, want := seen(t, n), []string{"0:flow/a/A", "1:flow/a/A", "2:flow/a/A"}; !slices.Equal(got, want) {
		t.Errorf("keep saw %q, want %q", got, want)
	}
}

// TestFlowUnrecordedRunsAgain: a flow run the store did not record is
// handed out again by the queue while the flow runs (it held a place of
// the window until the next start before), and after a stop and a start
// of the flow, as a replay both times: its module runs are reused, never
// run twice.
func TestFlowUnrecordedRunsAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	submitTagKeep(t, n)
	doc := "id: unrec\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: c, service: keep}\nwires:\n  - {from: a, to: c}\n"
	applyStart(t, n.op, doc)
	var refused atomic.Int32
	node.FailFlowRuns(n.Node, func(r store.FlowRun) error {
		if r.Flow != "unrec" {
			return nil
		}
		refused.Add(1)
		return errors.New("the store refuses flow runs (test)")
	})
	fired, err := n.op.FireFlow(ctx, "unrec", api.FlowFireRequest{Message: json.RawMessage(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	// Refused twice: handed out again while the flow runs.
	for deadline := time.Now().Add(30 * time.Second); refused.Load() < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the flow run was refused %d times in 30 s, want it handed out again after its first refusal", refused.Load())
		}
	}
	if _, err := n.op.StopFlow(ctx, "unrec"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "unrec"); err != nil {
		t.Fatal(err)
	}
	node.FailFlowRuns(n.Node, nil)
	runs := waitFlowRuns(t, n, "unrec", 1)
	if len(runs) != 1 || runs[0].ID != fired.ID || runs[0].Outcome != "ok" || !runs[0].Replayed {
		t.Errorf("flow runs %+v, want %s ok, replayed", runs, fired.ID)
	}
	if got := seen(t, n); !slices.Equal(got, []string{"1:flow/a/A"}) {
		t.Errorf("keep saw %q, want the message once: its runs reused, not run again", got)
	}
}

// TestFlowServiceOwnerChanged: a running flow does not send its messages
// to a service name its owner removed and another submitter took: the
// module's run fails, naming why, and the other's service runs nothing.
func TestFlowServiceOwnerChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	alice, bob := submitter(t, n, "alice"), submitter(t, n, "bob")
	for _, dir := range []string{
		nodeService(t, "tag", "{memory: 128Mi, timeout: 10s}", flowTagJS),
		nodeService(t, "keep", "{memory: 128Mi, timeout: 10s}", flowKeepJS),
	} {
		if _, err := alice.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	doc := "id: owned\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: c, service: keep}\nwires:\n  - {from: a, to: c}\n"
	applyStart(t, alice, doc)
	if r, err := alice.FireFlow(ctx, "owned", api.FlowFireRequest{Message: json.RawMessage(`{"n":1}`), Wait: "1m"}); err != nil || r.Outcome != "ok" {
		t.Fatalf("first fire = %+v, %v", r, err)
	}
	if err := n.op.Remove(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Submit(ctx, pack(t, nodeService(t, "keep", "{memory: 128Mi, timeout: 10s}", flowKeepJS))); err != nil {
		t.Fatal(err)
	}
	r, err := alice.FireFlow(ctx, "owned", api.FlowFireRequest{Message: json.RawMessage(`{"n":2}`), Wait: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != "failed" || r.Module != "c" || !strings.Contains(r.Error, "no longer the one this flow runs") {
		t.Errorf("fire after keep changed owner = %s at %q: %s; want failed at c, saying its service changed owner", r.Outcome, r.Module, r.Error)
	}
	if runs, err := bob.Runs(ctx, "keep", 10); err != nil || len(runs) != 0 {
		t.Errorf("bob's keep ran %d times (%v), want none of alice's messages: %+v", len(runs), err, runs)
	}
	// Nor do the name's reports show him alice's runs of it.
	if u, err := bob.Usage(ctx, "keep", time.Time{}); err != nil || len(u.Records) != 0 || u.Totals.Runs != 0 {
		t.Errorf("bob's usage of keep = %d records, %d runs (%v), want none of alice's", len(u.Records), u.Totals.Runs, err)
	}
	if w, err := bob.Why(ctx, "keep", time.Time{}); err != nil || len(w.Evaluations) != 0 {
		t.Errorf("bob's why of keep = %d evaluations (%v), want none of alice's runs", len(w.Evaluations), err)
	}
}

// TestFlowStepDoesNotHoldFlows: a single step whose module run waits (its
// service busy to its concurrency bound) keeps no other flow operation
// waiting: another flow is applied and started meanwhile.
func TestFlowStepDoesNotHoldFlows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	slow := `exports.decide = async (ctx) => { await new Promise((r) => setTimeout(r, (ctx.message && ctx.message.sleep) || 0)); return { noop: 'slept' }; };`
	if _, err := n.op.Submit(ctx, pack(t, statelessService(t, "slow", "node", slow, 1))); err != nil {
		t.Fatal(err)
	}
	applyStart(t, n.op, "id: busy\nversion: 1.0.0\nmodules:\n  - {id: a, service: slow}\n")
	if _, err := n.op.SetBreakpoint(ctx, "busy", "a", true); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.FireFlow(ctx, "busy", api.FlowFireRequest{Message: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		f, err := n.op.Flow(ctx, "busy")
		if err != nil {
			t.Fatal(err)
		}
		if f.Modules[0].Waiting == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a holds no message after 30 s")
		}
	}
	// slow's one slot, taken for 8 s by a fire of its own.
	fired := make(chan error, 1)
	go func() {
		_, err := n.op.Fire(ctx, "slow", json.RawMessage(`{"sleep":8000}`))
		fired <- err
	}()
	time.Sleep(500 * time.Millisecond)
	stepped := make(chan error, 1)
	go func() {
		_, err := n.op.StepFlow(ctx, "busy")
		stepped <- err
	}()
	time.Sleep(500 * time.Millisecond) // the step waits for the slot
	select {
	case err := <-stepped:
		t.Fatalf("the step ended while slow's slot was taken: %v", err)
	default:
	}
	// Before, the step held the node's flow lock: this waited for it.
	start := time.Now()
	applyStart(t, n.op, "id: other\nversion: 1.0.0\nmodules:\n  - {id: b, service: slow}\n")
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("applying and starting another flow took %v beside a step waiting for a slot (8 s), want it not to wait", took)
	}
	select {
	case err := <-stepped:
		if err != nil {
			t.Errorf("step: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("the step did not end once the slot was free")
	}
	if err := <-fired; err != nil {
		t.Fatal(err)
	}
}

// TestFlowContextLostWrite: a write of the flow context the store did not
// take (another writer's beat it) is reported lost to its flow run even
// once a later write is stored: the flow run fails rather than be
// recorded ok without its write.
func TestFlowContextLostWrite(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	requireProcess(t, n)
	submitTagKeep(t, n)
	applyStart(t, n.op, "id: ctxlost\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n")
	lost, later := node.LoseContextWrite(n.Node, "ctxlost")
	if lost == nil || !strings.Contains(lost.Error(), "written meanwhile by another writer") {
		t.Errorf("the lost write's flow run is told %v, want the conflict", lost)
	}
	if later != nil {
		t.Errorf("the later write's flow run is told %v, want stored", later)
	}
}

// TestFlowErrorLoopBound: a wire from a module's error port marked as a
// loop keeps its bound like any other: a message that fails at b every
// time goes round b:error → a twice and then fails its flow run, saying
// why (it went round 10,000 messages' worth before).
func TestFlowErrorLoopBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	submitFlowServices(t, n)
	doc := "id: eloop\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: b, service: check}\n" +
		"wires:\n  - {from: a, to: b}\n  - {from: \"b:error\", to: a, loop: 2}\n"
	applyStart(t, n.op, doc)
	r, err := n.op.FireFlow(ctx, "eloop", api.FlowFireRequest{Message: json.RawMessage(`{"n":7}`), Wait: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != "failed" || r.Module != "b" || !strings.Contains(r.Error, "went round its loop more than 2 times") {
		t.Errorf("flow run = %s at %q: %s; want failed at b, its error loop's bound of 2 passed", r.Outcome, r.Module, r.Error)
	}
	ran := map[string]int{}
	for _, s := range r.Steps {
		ran[s.Module]++
	}
	if ran["a"] != 3 || ran["b"] != 3 {
		t.Errorf("steps %v, want a and b 3 times each (once, then twice round the loop)", ran)
	}
}

// TestFlowEndsAfterReopen: flow runs in flight when their flow's queue is
// opened again (as a lost delivery makes it), and which end before the
// new reader hands their messages out again, remove their messages by
// sequence: the acknowledgement of a delivery whose consumer is gone
// would get no answer, and each message would run again as a replay.
func TestFlowEndsAfterReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	submitTagKeep(t, n)
	doc := "id: again\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: c, service: keep}\nwires:\n  - {from: a, to: c}\n"
	applyStart(t, n.op, doc)
	if _, err := n.op.SetBreakpoint(ctx, "again", "a", true); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range node.FlowWindow {
		if _, err := n.op.FireFlow(ctx, "again", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i+1))}); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%d:flow/a/A", i+1))
	}
	holdWindow(t, n, "again")
	if !node.ReopenFlowQueue(n.Node, "again") {
		t.Fatal("the flow's queue was not opened again")
	}
	if _, err := n.op.SetBreakpoint(ctx, "again", "a", false); err != nil {
		t.Fatal(err)
	}
	waitFlowRuns(t, n, "again", node.FlowWindow)
	var f api.Flow
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if f, err = n.op.Flow(ctx, "again"); err != nil {
			t.Fatal(err)
		}
		if f.Queued == 0 && f.Modules[0].Waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still queued 30 s after every flow run was recorded", f.Queued)
		}
	}
	time.Sleep(200 * time.Millisecond) // a message handed out again would begin by now
	if f, err := n.op.Flow(ctx, "again"); err != nil || f.Modules[0].Ran != node.FlowWindow {
		t.Errorf("a ran %d messages (%v), want each of the %d once: none run again as a replay", f.Modules[0].Ran, err, node.FlowWindow)
	}
	if got := seen(t, n); !slices.Equal(got, want) {
		t.Errorf("keep saw %q, want %q", got, want)
	}
}

// TestFlowLostDelivery: a message the flow's queue handed out that never
// reached the node (a pull answered after the node stopped waiting for
// it, as a store electing a leader makes happen) still runs, once and in
// its turn: the node sees the gap at the next message, or, with none
// after it, at its checks of the queue, and opens the queue again.
func TestFlowLostDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	requireProcess(t, n)
	submitTagKeep(t, n)
	doc := "id: lose\nversion: 1.0.0\nmodules:\n  - {id: a, service: tag, config: {tag: A}}\n  - {id: c, service: keep}\nwires:\n  - {from: a, to: c}\n"
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(doc), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "lose"); err != nil {
		t.Fatal(err)
	}
	var want []string
	next := 0
	// round holds a's messages at a breakpoint until the window of flow
	// runs in flight is full, queues after messages more, loses the first
	// of them on its way, and lets everything go on.
	round := func(after int) {
		t.Helper()
		if _, err := n.op.SetBreakpoint(ctx, "lose", "a", true); err != nil {
			t.Fatal(err)
		}
		ids := map[string]int{}
		for range node.FlowWindow + after {
			r, err := n.op.FireFlow(ctx, "lose", api.FlowFireRequest{Message: json.RawMessage(fmt.Sprintf(`{"n":%d}`, next+1))})
			if err != nil {
				t.Fatal(err)
			}
			ids[r.ID] = next + 1
			want = append(want, fmt.Sprintf("%d:flow/a/A", next+1))
			next++
		}
		holdWindow(t, n, "lose")
		lost, err := node.LoseFlowMessage(ctx, n.Node, "lose", func() {
			if _, err := n.op.SetBreakpoint(ctx, "lose", "a", false); err != nil {
				t.Error(err)
			}
		})
		if err != nil || ids[lost] != next-after+1 {
			t.Fatalf("lost %q (message %d), %v; want the first beyond the window, message %d", lost, ids[lost], err, next-after+1)
		}
		waitFlowRuns(t, n, "lose", next)
	}
	round(3) // the gap is seen at the message after the lost one
	round(1) // none comes after it: the queue's checks see it
	runs := waitFlowRuns(t, n, "lose", next)
	if len(runs) != next {
		t.Errorf("%d flow runs recorded, want %d", len(runs), next)
	}
	for _, r := range runs {
		if r.Outcome != "ok" {
			t.Errorf("flow run %s = %s (%s)", r.ID, r.Outcome, r.Error)
		}
	}
	if got := seen(t, n); !slices.Equal(got, want) {
		t.Errorf("keep saw %d messages %q;\nwant each of the %d once, in order: %q", len(got), got, len(want), want)
	}
}
