package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/runtimes/browser/browsertest"
)

// Services of the browser flow test: a Node.js module that says where it
// ran (a page's module worker has no process object; Node.js has), and a
// Python module that passes on where its message was.
const (
	whereJS = `exports.decide = async (ctx) => ({ emit: [{ port: 'out', message: {
  n: ctx.message.n, on: typeof process === 'undefined' ? 'browser' : 'node' } }] });`
	wherePy = `    m = input["message"]
    return {"noop": "%d on %s" % (m["n"], m["on"])}
`
)

// TestFlowBrowser runs a flow Node.js → browser → Python with its middle
// module placed on a page open in a real Chromium (browser/lab): every
// message passes each module once, in order per wire, the middle one on
// the page (its steps naming the runtime); the page is closed mid-run
// and opened again, and no message is lost or goes on twice (those it
// held queue at the module while it is away, a new version applied
// meanwhile without waiting for them). Then the flow, applied again with
// when_gone:
// failover, runs its messages on the service's Node.js worker while the
// page is away, saying so in each step, and on the page again once it is
// back; a single step at a breakpoint on the module does not wait for
// the page. 1,000 messages.
func TestFlowBrowser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	msgs := 1000
	if raceDetector {
		msgs = 250 // the 1,000 go through the pass without -race
	}
	n := startNode(t, func(c *node.Config) { c.Runs.PerService = int64(4 * msgs) })
	requireProcess(t, n)
	b := browsertest.Browser(t)
	py := t.TempDir()
	for file, text := range map[string]string{
		"andromeda.yaml": "name: pywhere\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: server\n" +
			"triggers:\n  - {kind: manual}\nresources: {memory: 128Mi, timeout: 10s}\ncapabilities: {network: none}\n",
		"main.py": "def handle(input):\n" + wherePy,
	} {
		if err := os.WriteFile(filepath.Join(py, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{
		nodeService(t, "jsrelay", "{memory: 128Mi, timeout: 10s}", relayJS),
		nodeService(t, "jswhere", "{memory: 128Mi, timeout: 10s}", whereJS),
		py,
	} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := n.op.CreateToken(ctx, "lab", api.RoleRuntime)
	if err != nil {
		t.Fatal(err)
	}
	open := func() context.CancelFunc {
		tab, cancel := chromedp.NewContext(b)
		if err := chromedp.Do(tab, chromedp.Navigate("http://"+n.Addr()+"/runtime/browser#token="+rt.Secret+"&runtime=lab&name=lab")); err != nil {
			t.Fatal(err)
		}
		return cancel
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	module := func(id string) api.FlowModule {
		f, err := n.op.Flow(ctx, "edge")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range f.Modules {
			if m.ID == id {
				return m
			}
		}
		t.Fatalf("flow edge has no module %s", id)
		return api.FlowModule{}
	}
	connected := func() bool {
		rs, err := n.op.Runtimes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(rs, func(r api.Runtime) bool { return r.ID == "browser/lab" && r.Enabled })
	}
	closePage := open()
	waitFor("the page connected", connected)

	doc := func(version, whenGone string) []byte {
		return []byte("id: edge\nversion: " + version + "\nmodules:\n  - {id: js, service: jsrelay}\n" +
			"  - {id: br, service: jswhere, runtime: browser/lab, when_gone: " + whenGone + "}\n  - {id: py, service: pywhere}\n" +
			"wires:\n  - {from: js, to: br}\n  - {from: br, to: py}\n")
	}
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", doc("1.0.0", "queue"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "edge"); err != nil {
		t.Fatal(err)
	}
	if m := module("br"); m.Runtime != "browser/lab" || m.WhenGone != "queue" || m.Away {
		t.Errorf("module br = %+v, want on browser/lab, queue, not away", m)
	}
	message := func(i int) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))
	}

	// Close the page once a third of the messages passed it: the rest
	// wait at br (queue), and go on when it is back.
	fired := make(chan struct{})
	go func() {
		defer close(fired)
		fireFromFour(t, n, "edge", msgs, message)
	}()
	waitFor("a third of the messages on the page", func() bool { return module("br").Ran >= uint64(msgs/3) })
	closePage()
	waitFor("the page gone", func() bool { return !connected() })
	waitFor("messages waiting for the page", func() bool {
		m := module("br")
		return m.Away && m.Waiting > 0
	})
	ranAway := module("br").Ran
	t.Logf("the page closed after it ran %d messages; %d wait for it", ranAway, module("br").Waiting)
	time.Sleep(500 * time.Millisecond)
	if m := module("br"); m.Ran != ranAway {
		t.Errorf("br ran %d messages while its page was away (queue), want none", m.Ran-ranAway)
	}
	// A new version applied meanwhile does not wait for the page: the
	// messages waiting for it stay queued and go on in the new version.
	start := time.Now()
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", doc("1.0.1", "queue"), false); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("applying a new version while the page is away took %v", took)
	}
	closePage = open()
	defer func() { closePage() }()
	<-fired
	if t.Failed() {
		t.FailNow()
	}
	waitFlowIdle(t, n, "edge", 2*time.Minute)
	checkEdge(t, n, msgs, func(i int, where string) bool { return where == "browser" }, "browser/lab", "")

	// Failover: while the page is away, br runs on jswhere's own worker.
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", doc("1.1.0", "failover"), false); err != nil {
		t.Fatal(err)
	}
	waitFor("version 1.1.0 running", func() bool {
		f, err := n.op.Flow(ctx, "edge")
		return err == nil && f.Version == "1.1.0" && f.Running
	})
	closePage()
	waitFor("the page gone", func() bool { return !connected() })
	const away = 50
	for i := msgs; i < msgs+away; i++ {
		if _, err := fireStored(n, "edge", api.FlowFireRequest{Message: message(i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFlowIdle(t, n, "edge", time.Minute)
	closePage = open()
	waitFor("the page connected again", connected)
	for i := msgs + away; i < msgs+2*away; i++ {
		if _, err := fireStored(n, "edge", api.FlowFireRequest{Message: message(i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFlowIdle(t, n, "edge", time.Minute)
	checkEdge(t, n, msgs+2*away, func(i int, where string) bool {
		if i >= msgs && i < msgs+away {
			return where == "node"
		}
		return where == "browser"
	}, "", "failed over: no page of browser/lab is connected")

	// A step does not wait for a page that is away: a message held at br
	// (queue) stays held, and steps on the page once it is back.
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", doc("1.2.0", "queue"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.SetBreakpoint(ctx, "edge", "br", true); err != nil {
		t.Fatal(err)
	}
	closePage()
	waitFor("the page gone", func() bool { return !connected() })
	if _, err := fireStored(n, "edge", api.FlowFireRequest{Message: message(-1)}); err != nil {
		t.Fatal(err)
	}
	waitFor("the message held at br", func() bool { return len(module("br").Held) == 1 })
	start = time.Now()
	res, err := n.op.StepFlow(ctx, "edge")
	if took := time.Since(start); err != nil || len(res["br"].Errors) != 1 || !strings.Contains(res["br"].Errors[0], "no page of browser/lab is connected") || took > 5*time.Second {
		t.Errorf("step while the page is away = %+v, %v after %v; want at once, saying the page is away", res, err, took)
	}
	if m := module("br"); len(m.Held) != 1 {
		t.Errorf("after the step br holds %d messages, want 1", len(m.Held))
	}
	closePage = open()
	waitFor("the page connected again", connected)
	res, err = n.op.StepFlow(ctx, "edge")
	if err != nil || len(res["br"].Runs) != 1 || res["br"].Runs[0] == "" || res["br"].Errors[0] != "" {
		t.Errorf("step with the page back = %+v, %v; want br's run", res, err)
	}
	if _, err := n.op.SetBreakpoint(ctx, "edge", "br", false); err != nil {
		t.Fatal(err)
	}
	waitFlowIdle(t, n, "edge", time.Minute)
}

// checkEdge checks flow edge after its messages 0 to msgs-1: each module
// ran each flow run once, in the order of the module before it; py saw
// message i where ok says it was; br's steps say where they ran (the
// runtime), and those that failed over say why (note).
func checkEdge(t *testing.T, n *testNode, msgs int, ok func(i int, where string) bool, onPage, note string) {
	t.Helper()
	ctx := context.Background()
	order := map[string][]string{}
	byRun := map[string]api.Run{}
	for _, svc := range []string{"jsrelay", "jswhere", "pywhere"} {
		runs := allRuns(t, n.op, svc)
		slices.SortFunc(runs, func(a, b api.Run) int { return a.Start.Compare(b.Start) })
		for _, r := range runs {
			if r.Trigger.Flow == nil {
				t.Fatalf("run %s of %s has no flow trigger", r.ID, svc)
			}
			order[r.Trigger.Flow.Module] = append(order[r.Trigger.Flow.Module], r.Trigger.Flow.Run)
			byRun[r.ID] = r
		}
	}
	for _, m := range []string{"js", "br", "py"} {
		if len(order[m]) != msgs {
			t.Errorf("module %s ran %d messages, want %d", m, len(order[m]), msgs)
		}
		seen := map[string]bool{}
		for _, fr := range order[m] {
			if seen[fr] {
				t.Errorf("module %s ran flow run %s twice", m, fr)
			}
			seen[fr] = true
		}
	}
	for _, w := range [][2]string{{"js", "br"}, {"br", "py"}} {
		if !slices.Equal(order[w[0]], order[w[1]]) {
			t.Errorf("wire %s → %s: %s ran its messages in another order than %s sent them", w[0], w[1], w[1], w[0])
		}
	}
	var got []int
	bad := 0
	for _, r := range byRun {
		if r.Service != "pywhere" {
			continue
		}
		var i int
		var where string
		if _, err := fmt.Sscanf(r.Noop, "%d on %s", &i, &where); err != nil {
			t.Fatalf("py run %s: %q (%s: %s)", r.ID, r.Noop, r.Outcome, r.Error)
		}
		got = append(got, i)
		if !ok(i, where) && bad < 5 {
			bad++
			t.Errorf("message %d ran on %s at br", i, where)
		}
	}
	slices.Sort(got)
	for i := range msgs {
		if i >= len(got) || got[i] != i {
			t.Fatalf("py got messages %v…, want each of 0 to %d once", got[:min(len(got), 20)], msgs-1)
		}
	}
	runs, err := n.op.FlowRuns(ctx, "edge", 1000)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, fr := range runs {
		if fr.Outcome != "ok" || len(fr.Steps) != 3 {
			t.Fatalf("flow run %+v", fr)
		}
		s := fr.Steps[1]
		r := byRun[s.Run]
		if s.Module != "br" || r.ID == "" {
			t.Fatalf("flow run %s: step 1 = %+v", fr.ID, s)
		}
		switch {
		case s.Runtime == "browser/lab" && s.Note == "":
			steps++
		case s.Runtime == "" && note != "" && strings.Contains(s.Note, note):
		default:
			t.Fatalf("flow run %s: br's step %+v", fr.ID, s)
		}
	}
	if onPage != "" && steps != len(runs) {
		t.Errorf("%d of %d flow runs ran br on %s", steps, len(runs), onPage)
	}
}

// BenchmarkFlowBrowserHop measures a hop to and from a browser page on
// one node, beside the same hop to a Node.js worker, in the same run: the
// time of a flow run (its message stored to its record stored) through
// relay → relay → relay with the middle module on the service's worker
// (node) or on a page open in Chromium (browser), and through one relay
// module; each hop-p50 is the three-module flow's p50 less the one-module
// flow's, over its two hops. Every hop is a run of the relay service,
// recorded.
func BenchmarkFlowBrowserHop(b *testing.B) {
	ctx := context.Background()
	n := startNode(b)
	requireProcess(b, n)
	br := browsertest.Browser(b)
	if _, err := n.op.Submit(ctx, pack(b, nodeService(b, "relay", "{memory: 128Mi, timeout: 10s, concurrency: 8}", relayJS))); err != nil {
		b.Fatal(err)
	}
	rt, err := n.op.CreateToken(ctx, "bench", api.RoleRuntime)
	if err != nil {
		b.Fatal(err)
	}
	tab, cancel := chromedp.NewContext(br)
	defer cancel()
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+n.Addr()+"/runtime/browser#token="+rt.Secret+"&runtime=bench")); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rs, err := n.op.Runtimes(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if slices.ContainsFunc(rs, func(r api.Runtime) bool { return r.ID == "browser/bench" && r.Enabled }) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the page did not connect within 30s")
		}
	}
	line := func(id, middle string) string {
		return "id: " + id + "\nversion: 1.0.0\nmodules:\n  - {id: a, service: relay}\n  - {id: b, service: relay" + middle + "}\n  - {id: c, service: relay}\n" +
			"wires:\n  - {from: a, to: b}\n  - {from: b, to: c}\n"
	}
	startWarm(b, n, "one", relayFlow("one", 1))
	startWarm(b, n, "node", line("node", ""))
	startWarm(b, n, "browser", line("browser", ", runtime: browser/bench"))
	durs := map[string][]time.Duration{}
	msg := json.RawMessage(`{"n":1}`)
	b.ResetTimer()
	for b.Loop() {
		for _, id := range []string{"one", "node", "browser"} {
			r, err := n.op.FireFlow(ctx, id, api.FlowFireRequest{Message: msg, Wait: "1m"})
			if err != nil || r.Outcome != "ok" {
				b.Fatalf("%s = %+v, %v", id, r, err)
			}
			durs[id] = append(durs[id], r.Duration)
		}
	}
	b.StopTimer()
	p := func(id string, q float64) time.Duration {
		l := slices.Sorted(slices.Values(durs[id]))
		return l[int(q*float64(len(l)-1))]
	}
	for _, id := range []string{"node", "browser"} {
		reportLatency(b, id+"-flow", durs[id])
		b.ReportMetric(float64((p(id, 0.5)-p("one", 0.5)).Microseconds())/2, id+"-hop-p50-µs")
		b.ReportMetric(float64((p(id, 0.99)-p("one", 0.99)).Microseconds())/2, id+"-hop-p99-µs")
	}
}
