package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/store"
)

// clusterMirror is the mirror reactor as service name, claiming no target.
func clusterMirror(t testing.TB, name string) []byte {
	return pack(t, mirrorService(t, "name: mirror", "name: "+name, "target: vault-7\n", "", "state: true", "state: false"))
}

// spanMessage is a message for flow span (a → b → c, each a mirror): a
// emits to b, b to c, and c ends it with a noop naming k.
func spanMessage(k int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"emit":[{"port":"out","message":{"emit":[{"port":"out","message":{"noop":"m%d"}}]}}]}`, k))
}

const spanFlow = "id: span\nversion: 1.0.0\nmodules:\n  - {id: a, service: ma}\n  - {id: b, service: mb}\n  - {id: c, service: mc}\n" +
	"wires:\n  - {from: a, to: b}\n  - {from: b, to: c}\n" +
	"triggers:\n  - {kind: http, path: /hooks/span, auth: none}\n"

// TestClusterFlow runs a flow across three nodes: its modules' services
// are placed on n1, n2 and n3, the flow is applied and started through
// n2, so each message crosses nodes twice (n1 → n2 → n3). Messages fired
// through any node each run once through every module, on its service's
// node, in the order they were fired; lifecycle calls made at another
// node are answered by the flow's node. Then the flow's node is cut off
// (its heartbeats stop, the node still running): another node takes the
// flow over and its services, the messages fired meanwhile each run
// once, and the cut-off node stops running the flow once it sees its queue
// opened elsewhere. Last, the new holder stops cleanly: the third node
// takes the flow over from a node that left, and every message fired
// across all of it ran once, each module's run recorded once.
func TestClusterFlow(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t, 3)
	for i, name := range []string{"ma", "mb", "mc"} {
		res, err := nodes[i].op.Submit(ctx, clusterMirror(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if res.Service.Node != nodes[i].cfg.Name {
			t.Fatalf("%s submitted to %s: placed on %q", name, nodes[i].cfg.Name, res.Service.Node)
		}
	}
	// n2 learns of the placements through its watch.
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err = nodes[1].op.ApplyFlow(ctx, "application/yaml", []byte(spanFlow), false); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply span through n2: %v", err)
		}
	}
	f, err := nodes[1].op.StartFlow(ctx, "span")
	if err != nil || !f.Running || f.Node != "n2" {
		t.Fatalf("start span through n2 = %+v, %v; want running on n2", f, err)
	}

	// n3's store refuses the first two runs of mc, module c, at every
	// attempt n3's run makes: the flow's node, n2, waits for n3 to record
	// them late, and never runs them twice.
	var refusedMu sync.Mutex
	refused := map[string]int{}
	node.FailRecords(nodes[2].Node, func(r store.Run) error {
		if r.Service != "mc" {
			return nil
		}
		refusedMu.Lock()
		defer refusedMu.Unlock()
		if _, ok := refused[r.ID]; !ok && len(refused) == 2 {
			return nil
		}
		if refused[r.ID]++; refused[r.ID] <= 3 {
			return errors.New("nats: no response from stream")
		}
		return nil
	})

	var mu sync.Mutex
	var fired []string  // flow run ids, in the order fired
	var hooked []string // flow runs of webhook requests
	fire := func(via *testNode, k int) {
		t.Helper()
		r, err := fireStored(via, "span", api.FlowFireRequest{Message: spanMessage(k)})
		for deadline := time.Now().Add(20 * time.Second); status(err) == 503 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond) // a stream electing its leader: try again, as Retry-After says
			r, err = fireStored(via, "span", api.FlowFireRequest{Message: spanMessage(k)})
		}
		if err != nil {
			t.Fatalf("fire %d through %s: %v", k, via.cfg.Name, err)
		}
		mu.Lock()
		fired = append(fired, r.ID)
		mu.Unlock()
	}
	const phase = 30
	for k := range phase {
		fire(nodes[k%3], k)
	}
	// A fire that waits, through n3: answered by n2 once the run ended.
	fr, err := nodes[2].op.FireFlow(ctx, "span", api.FlowFireRequest{Message: spanMessage(phase), Wait: "30s"})
	if err != nil || fr.Outcome != "ok" || len(fr.Steps) != 3 {
		t.Fatalf("fire through n3 with a wait = %+v, %v; want ok in three steps", fr, err)
	}
	fired = append(fired, fr.ID)
	refusedMu.Lock()
	if len(refused) != 2 {
		t.Errorf("n3 refused %d runs of mc, want 2 (the messages before this one ran): the fault did not apply", len(refused))
	}
	refusedMu.Unlock()
	// Its webhook, through n1 and n3: queued there, run by n2. (The
	// message is the request, which the mirror at a cannot answer: those
	// flow runs end failed at a.)
	for _, via := range []*testNode{nodes[0], nodes[2]} {
		a := call(t, via.HooksAddr(), "POST", "/hooks/span", `{"hook":true}`, "Content-Type", "application/json")
		if a.status != 202 || a.header.Get("Andromeda-Flow-Run") == "" {
			t.Fatalf("span's webhook through %s = %d %q (%s); want 202 with the flow run", via.cfg.Name, a.status, a.body, a.header.Get("Andromeda-Reason"))
		}
		hooked = append(hooked, a.header.Get("Andromeda-Flow-Run"))
	}
	// A service of another node cannot take the flow's path.
	if _, err := nodes[0].op.Submit(ctx, pack(t, hookService(t, "path: /hooks/open", "path: /hooks/span"))); err == nil || !strings.Contains(err.Error(), "mounted by flow span") {
		t.Errorf("a service on n1 mounting span's path: %v, want a conflict", err)
	}
	for i, s := range fr.Steps {
		want := map[string]string{"a": "on node n1", "b": "", "c": "on node n3"}[s.Module]
		if s.Module != string(rune('a'+i)) || s.Note != want || s.Outcome != map[bool]string{true: "noop", false: "ok"}[i == 2] {
			t.Errorf("step %d = %+v; want module %c, ok, note %q", i, s, 'a'+i, want)
		}
	}
	// Inspect through n1: the flow's node answers (its live counts).
	waitFlowIdle(t, nodes[0], "span", 30*time.Second)
	if f, err := nodes[0].op.Flow(ctx, "span"); err != nil || f.Node != "n2" || f.Modules[0].Ran == 0 {
		t.Errorf("span through n1 = %+v, %v; want n2's view (node n2, a ran)", f, err)
	}
	checkSpan(t, nodes[0], fired, hooked, true)

	// The flow's node is cut off: its flow, and mb, go elsewhere.
	resume := node.PauseHeartbeat(nodes[1].Node)
	paused := true
	defer func() {
		if paused {
			resume()
		}
	}()
	var wg sync.WaitGroup
	wg.Go(func() {
		for k := phase + 3; k < 2*phase; k++ {
			fire(nodes[0], k)
			time.Sleep(50 * time.Millisecond)
		}
	})
	var holder string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if f, err := nodes[0].op.Flow(ctx, "span"); err == nil && f.Node != "n2" && f.Node != "" {
			holder = f.Node
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("span not taken over 20 s after n2 was cut off")
		}
	}
	wg.Wait()
	waitFlowRuns(t, nodes[0], "span", len(fired))
	resume()
	paused = false
	t.Logf("span taken over by %s", holder)
	checkSpan(t, nodes[0], fired, hooked, false)

	// The holder leaves: the third node takes it over; n2 is back and may
	// take it too. Messages fired now are in order again.
	gone := map[string]int{"n1": 0, "n3": 2}[holder]
	via := nodes[2-gone]
	nodes[gone].Close()
	for k := 2 * phase; k < 3*phase; k++ {
		fire(via, k)
	}
	runs := waitFlowRuns(t, via, "span", len(fired))
	for _, r := range runs {
		if r.Outcome != "ok" && !slices.Contains(hooked, r.ID) {
			t.Errorf("flow run %s ended %s: %s", r.ID, r.Outcome, r.Error)
		}
	}
	if f, err := via.op.Flow(ctx, "span"); err != nil || f.Node == holder || f.Node == "" {
		t.Errorf("span after %s left = %+v, %v; want held by another node", holder, f, err)
	}
	checkSpanOnce(t, via, fired, hooked)
}

// checkSpan checks that each flow run fired ran once through a, b and c,
// ok, each step's run recorded on the node its service ran on; with
// ordered, that c took them in the order they were fired.
func checkSpan(t *testing.T, n *testNode, fired, hooked []string, ordered bool) {
	t.Helper()
	runs := waitFlowRuns(t, n, "span", len(fired)+len(hooked))
	byID := map[string]api.FlowRun{}
	for _, r := range runs {
		if _, dup := byID[r.ID]; dup {
			t.Errorf("flow run %s recorded twice", r.ID)
		}
		byID[r.ID] = r
	}
	for _, id := range fired {
		r, ok := byID[id]
		if !ok || r.Outcome != "ok" || len(r.Steps) != 3 {
			t.Errorf("flow run %s = %+v (found %v); want ok in three steps", id, r, ok)
		}
	}
	for _, id := range hooked {
		r, ok := byID[id]
		if !ok || r.Outcome != "failed" || r.Module != "a" || !strings.Contains(r.By, "POST /hooks/span") {
			t.Errorf("flow run %s of a webhook = %+v (found %v); want failed at a (the mirror cannot answer a request), by POST /hooks/span", id, r, ok)
		}
	}
	checkSpanOnce(t, n, fired, hooked)
	if !ordered {
		return
	}
	cRuns := runsOf(t, n, "mc")
	slices.SortFunc(cRuns, func(a, b api.Run) int { return a.Start.Compare(b.Start) })
	var order []string
	for _, r := range cRuns {
		if r.Trigger.Flow != nil {
			order = append(order, r.Trigger.Flow.Run)
		}
	}
	if !slices.Equal(order, fired) {
		t.Errorf("c took the flow runs in the order\n%v\nwant the order fired\n%v", order, fired)
	}
}

// checkSpanOnce checks that each module's service recorded exactly one
// run for each flow run fired (for those of webhooks, a's alone), and
// none for another.
func checkSpanOnce(t *testing.T, n *testNode, fired, hooked []string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range fired {
		want[id] = true
	}
	for _, id := range hooked {
		want[id] = true
	}
	for _, svc := range []string{"ma", "mb", "mc"} {
		runs := runsOf(t, n, svc)
		per := map[string]int{}
		nodes := map[string]int{}
		for _, r := range runs {
			if r.Trigger.Flow == nil {
				continue
			}
			per[r.Trigger.Flow.Run]++
			nodes[r.Node]++
			if !want[r.Trigger.Flow.Run] {
				t.Errorf("%s ran flow run %s, which was never fired", svc, r.Trigger.Flow.Run)
			}
		}
		for _, id := range fired {
			if per[id] != 1 {
				t.Errorf("%s recorded %d runs of flow run %s, want 1", svc, per[id], id)
			}
		}
		for _, id := range hooked {
			if k := map[bool]int{true: 1}[svc == "ma"]; per[id] != k {
				t.Errorf("%s recorded %d runs of webhook flow run %s, want %d", svc, per[id], id, k)
			}
		}
		if len(nodes) == 0 || strings.Contains(fmt.Sprint(nodes), "map[]") {
			t.Errorf("%s: no runs recorded", svc)
		}
		t.Logf("%s: runs by node %v", svc, nodes)
	}
}

// runsOf lists service's last 1,000 runs through n, trying again for a
// while on an error (a stream electing its leader after a node left).
func runsOf(t *testing.T, n *testNode, service string) []api.Run {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		runs, err := n.op.Runs(context.Background(), service, 1000)
		if err == nil {
			return runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs of %s through %s: %v", service, n.cfg.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkClusterFlowHop measures a flow's hop between two nodes of a
// three-node cluster beside the same hop on one node, in the same run:
// flows applied on n1 of one module (the mirror ma, on n1), of two on n1
// (ma → mb) and of two across nodes (ma → mc, mc on n2), fired one at a
// time in turn, each answered once its flow run is recorded. A hop is the
// two-module flow's time less the one-module flow's: routing the emit,
// running the next module (a run of its service, recorded) and, across
// nodes, the module's event and its run sent over NATS.
func BenchmarkClusterFlowHop(b *testing.B) {
	ctx := context.Background()
	nodes := startCluster(b, 3)
	for _, s := range []struct {
		n    *testNode
		name string
	}{{nodes[0], "ma"}, {nodes[0], "mb"}, {nodes[1], "mc"}} {
		if _, err := s.n.op.Submit(ctx, clusterMirror(b, s.name)); err != nil {
			b.Fatal(err)
		}
	}
	flows := map[string]string{
		"one":  "id: one\nversion: 1.0.0\nmodules:\n  - {id: a, service: ma}\n",
		"near": "id: near\nversion: 1.0.0\nmodules:\n  - {id: a, service: ma}\n  - {id: b, service: mb}\nwires:\n  - {from: a, to: b}\n",
		"far":  "id: far\nversion: 1.0.0\nmodules:\n  - {id: a, service: ma}\n  - {id: b, service: mc}\nwires:\n  - {from: a, to: b}\n",
	}
	msgs := map[string]json.RawMessage{
		"one":  json.RawMessage(`{"noop":"end"}`),
		"near": json.RawMessage(`{"emit":[{"port":"out","message":{"noop":"end"}}]}`),
		"far":  json.RawMessage(`{"emit":[{"port":"out","message":{"noop":"end"}}]}`),
	}
	ids := []string{"one", "near", "far"}
	for _, id := range ids {
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if _, err = nodes[0].op.ApplyFlow(ctx, "application/yaml", []byte(flows[id]), false); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("apply %s: %v", id, err)
			}
		}
		if _, err := nodes[0].op.StartFlow(ctx, id); err != nil {
			b.Fatal(err)
		}
		for range 20 { // warm: instances, connections
			if r, err := nodes[0].op.FireFlow(ctx, id, api.FlowFireRequest{Message: msgs[id], Wait: "1m"}); err != nil || r.Outcome != "ok" {
				b.Fatalf("warm %s = %+v, %v", id, r, err)
			}
		}
	}
	durs := map[string][]time.Duration{}
	b.ResetTimer()
	for b.Loop() {
		for _, id := range ids {
			r, err := nodes[0].op.FireFlow(ctx, id, api.FlowFireRequest{Message: msgs[id], Wait: "1m"})
			if err != nil || r.Outcome != "ok" {
				b.Fatalf("%s = %+v, %v", id, r, err)
			}
			if id == "far" && r.Steps[len(r.Steps)-1].Note != "on node n2" {
				b.Fatalf("far's last step %+v: want it on node n2", r.Steps[len(r.Steps)-1])
			}
			durs[id] = append(durs[id], r.Duration)
		}
	}
	b.StopTimer()
	p := func(l []time.Duration, q float64) time.Duration {
		l = slices.Clone(l)
		slices.Sort(l)
		return l[int(q*float64(len(l)-1))]
	}
	for _, id := range ids {
		reportLatency(b, id, durs[id])
	}
	for _, id := range []string{"near", "far"} {
		b.ReportMetric(float64((p(durs[id], 0.5) - p(durs["one"], 0.5)).Microseconds()), id+"-hop-p50-µs")
		b.ReportMetric(float64((p(durs[id], 0.99) - p(durs["one"], 0.99)).Microseconds()), id+"-hop-p99-µs")
	}
}

// TestClusterFlowApplyNodeDown: a new version of a running flow applied
// through n1 while the flow's node, n2, is lost (cut off, and still
// running the flow) is stored and not started on n1, where the flow
// would then run twice. The node that takes it over runs the new version.
// The same cluster first checks whose open executions a node resumes
// (checkExecutionsOwned).
func TestClusterFlowApplyNodeDown(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t, 3)
	checkExecutionsOwned(t, nodes[0])
	if _, err := nodes[0].op.Submit(ctx, clusterMirror(t, "ma")); err != nil {
		t.Fatal(err)
	}
	doc := func(version string) []byte {
		return []byte("id: solo\nversion: " + version + "\nmodules:\n  - {id: a, service: ma}\n")
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err = nodes[1].op.ApplyFlow(ctx, "application/yaml", doc("1.0.0"), false); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply solo through n2: %v", err)
		}
	}
	if f, err := nodes[1].op.StartFlow(ctx, "solo"); err != nil || f.Node != "n2" {
		t.Fatalf("start solo through n2 = %+v, %v; want running on n2", f, err)
	}
	for _, n := range []*testNode{nodes[0], nodes[2]} {
		node.HoldFlows(n.Node, true)
	}
	resume := node.PauseHeartbeat(nodes[1].Node)
	defer resume()
	for deadline := time.Now().Add(20 * time.Second); nodesOf(t, nodes[0])["n2"].Health != api.NodeLost; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("n1 does not see n2 lost 20 s after its heartbeats stopped")
		}
	}
	a, err := nodes[0].op.ApplyFlow(ctx, "application/yaml", doc("1.0.1"), false)
	if err != nil {
		t.Fatalf("apply 1.0.1 through n1 while n2 is lost: %v", err)
	}
	if a.Flow.Node != "n2" || a.Flow.Version != "1.0.1" || !a.Flow.Running {
		t.Errorf("applied = %+v; want version 1.0.1, running, still n2's", a.Flow)
	}
	if node.RunsFlow(nodes[0].Node, "solo") {
		t.Errorf("n1 runs solo while its node, n2, is alive and runs it")
	}
	if !node.RunsFlow(nodes[1].Node, "solo") {
		t.Errorf("n2 no longer runs solo: the test did not hold what it means to")
	}
	// Taken over once the others may: the new version runs there.
	for _, n := range []*testNode{nodes[0], nodes[2]} {
		node.HoldFlows(n.Node, false)
	}
	var holder *testNode
	for deadline := time.Now().Add(20 * time.Second); holder == nil; time.Sleep(100 * time.Millisecond) {
		for _, n := range []*testNode{nodes[0], nodes[2]} {
			if node.RunsFlow(n.Node, "solo") {
				holder = n
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("solo not taken over 20 s after n2 was lost")
		}
	}
	fr, err := holder.op.FireFlow(ctx, "solo", api.FlowFireRequest{Message: spanMessage(1), Wait: "30s"})
	if err != nil || fr.Outcome != "ok" {
		t.Fatalf("fire solo on %s = %+v, %v; want ok", holder.cfg.Name, fr, err)
	}
	if f, err := holder.op.Flow(ctx, "solo"); err != nil || f.Version != "1.0.1" || f.Node != holder.cfg.Name {
		t.Errorf("solo on %s = %+v, %v; want version 1.0.1 held there", holder.cfg.Name, f, err)
	}
}

// checkExecutionsOwned: where nodes share the store, node n (n1) starting
// resumes its own open executions only (another node's are in flight
// there), and takes a node's over only with the service it took from it,
// writing itself as their sender first.
func checkExecutionsOwned(t *testing.T, n *testNode) {
	t.Helper()
	ctx := context.Background()
	next := time.Now().Add(time.Hour).UTC() // not due: nothing is sent during the test
	for _, e := range []store.Execution{
		{Key: "k-theirs", Service: "ghost", Run: "r1", Seq: 0, Kind: "log", State: store.ExecRetry, Next: next, Node: "n9"},
		{Key: "k-other", Service: "other", Run: "r2", Seq: 0, Kind: "log", State: store.ExecRetry, Next: next, Node: "n9"},
		// Due now: resumed here, it would be sent at once.
		{Key: "k-due", Service: "due", Run: "r3", Seq: 0, Kind: "log", Request: json.RawMessage(`{"message":"x"}`), State: store.ExecRetry, Next: time.Now().UTC(), Node: "n9"},
	} {
		if err := node.PlanExecution(ctx, n.Node, e); err != nil {
			t.Fatal(err)
		}
	}
	before, err := node.Execution(ctx, n.Node, "due", "r3", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.ResumeExecutions(ctx, n.Node); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a resumed execution would be sent meanwhile; nothing to wait on when it is not
	if e, err := node.Execution(ctx, n.Node, "due", "r3", 0); err != nil || e.Revision != before.Revision || e.Node != "n9" || e.State != store.ExecRetry {
		t.Errorf("n9's due execution after n1 resumed its own = %+v, %v; want it untouched", e, err)
	}
	if err := node.AdoptExecutions(ctx, n.Node, "ghost", "n9"); err != nil {
		t.Fatal(err)
	}
	e, err := node.Execution(ctx, n.Node, "ghost", "r1", 0)
	for deadline := time.Now().Add(5 * time.Second); err == nil && e.Node != "n1" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		e, err = node.Execution(ctx, n.Node, "ghost", "r1", 0) // a replica may not have the write yet
	}
	if err != nil || e.Node != "n1" || e.State != store.ExecRetry {
		t.Errorf("n9's execution of ghost after n1 took ghost over = %+v, %v; want n1's, still to retry", e, err)
	}
	if e, err := node.Execution(ctx, n.Node, "other", "r2", 0); err != nil || e.Node != "n9" {
		t.Errorf("n9's execution of a service n1 did not take = %+v, %v; want n9's", e, err)
	}
}
