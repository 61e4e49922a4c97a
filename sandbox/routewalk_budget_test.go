package sandbox

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/contract"
)

// TestWalkRouteBytes walks a route a → b → c where a emits 16 messages to
// b, each b emits 3 big ones to c and each c answers big: the walk stops
// once it holds MaxWalkBytes, well before its hops run out, every call
// it made is a hop, and the hops are the walk's first ones, so the node,
// routing every emit the walk did not take, runs each message once, in
// the walk's order.
func TestWalkRouteBytes(t *testing.T) {
	const (
		n    = 16        // a's emits
		fan  = 3         // each b's emits
		size = 256 << 10 // bytes of each b message and each c output
	)
	pad := strings.Repeat("x", size)
	runTime := []byte{1, 2, 3, 4, 5, 6}
	route := Route{FlowRun: "fr1", RunTime: hex.EncodeToString(runTime), Max: 10000, To: map[string][]RouteDest{
		"out": {{Wire: 0, Module: "b", Port: "in", Name: "flow f/b",
			To: map[string][]RouteDest{"out": {{Wire: 1, Module: "c", Port: "in", Name: "flow f/c"}}}}},
	}}
	rj, _ := json.Marshal(route)
	in := contract.Input{RunID: "run-a", Service: "s", Trigger: contract.Trigger{Kind: "flow", Name: "flow f/a",
		Flow: &contract.FlowInfo{Flow: "f", Version: "1.0.0", Run: "fr1", Module: "a", Port: "in", Message: "fr1"}}}
	input, _ := json.Marshal(in)
	var emits []string
	for i := range n {
		emits = append(emits, fmt.Sprintf(`{"port":"out","message":{"i":%d}}`, i))
	}
	output := []byte(`{"emit":[` + strings.Join(emits, ",") + `]}`)

	// outputOf is module's output, the same in the walk and through the
	// node.
	outputOf := func(module string) []byte {
		if module == "b" {
			em := `{"port":"out","message":"` + pad + `"}`
			return []byte(`{"emit":[` + strings.Repeat(em+",", fan-1) + em + `]}`)
		}
		return []byte(`{"noop":"` + pad + `"}`)
	}
	calls := 0
	call := func(_ context.Context, b []byte) (Exit, error) {
		var hin contract.Input
		if err := json.Unmarshal(b, &hin); err != nil {
			t.Fatalf("hop input: %v", err)
		}
		calls++
		return Exit{Outcome: OK, Output: outputOf(hin.Trigger.Flow.Module)}, nil
	}
	hops := WalkRoute(context.Background(), rj, input, output, call)

	if full := n * (1 + fan); len(hops) == 0 || len(hops) >= full {
		t.Fatalf("%d hops of %d; want the walk to stop at %d MiB held", len(hops), full, MaxWalkBytes>>20)
	}
	if calls != len(hops) {
		t.Errorf("%d calls for %d hops; want a hop for every call (none to run again)", calls, len(hops))
	}
	kept, most := 0, 0
	for _, h := range hops {
		kept += len(h.Exit.Output)
		most = max(most, len(h.Exit.Output))
	}
	// The walk stops once it holds the bound, counting the emits it is
	// walking (a's, and b's, a hop's output at most): it may pass the
	// bound by the hop that crossed it.
	if kept > MaxWalkBytes+most || kept < MaxWalkBytes-len(output)-most {
		t.Errorf("the hops hold %d bytes; want about %d", kept, MaxWalkBytes)
	}

	// Route as the node does: an emit the walk took is its hop, any other
	// runs through the node, and both go on along the flow's wires.
	type key struct {
		from       string
		emit, wire int
	}
	ix := map[key]*Hop{}
	for i := range hops {
		h := &hops[i]
		k := key{h.From, h.Emit, h.Wire}
		if ix[k] != nil {
			t.Fatalf("hop %d (%+v) duplicates an earlier one", i, k)
		}
		ix[k] = h
	}
	wires := map[string]struct {
		wire int
		to   string
	}{"a": {0, "b"}, "b": {1, "c"}}
	type ran struct {
		module, msg string
		walked      bool
	}
	var runs []ran
	var settle func(module, runID string, output []byte)
	settle = func(module, runID string, output []byte) {
		var out struct {
			Emit []struct{ Port string } `json:"emit"`
		}
		if err := json.Unmarshal(output, &out); err != nil {
			t.Fatalf("output of %s: %v", runID, err)
		}
		w, ok := wires[module]
		if !ok {
			return
		}
		for i := range out.Emit {
			msgID := runID + "." + strconv.Itoa(i) + "." + strconv.Itoa(w.wire)
			id := ModuleRunID(runTime, "fr1", w.to, msgID)
			if h := ix[key{runID, i, w.wire}]; h != nil {
				delete(ix, key{runID, i, w.wire})
				if h.RunID != id || h.Module != w.to {
					t.Errorf("hop for %s = %s run %s; want %s run %s", msgID, h.Module, h.RunID, w.to, id)
				}
				runs = append(runs, ran{w.to, msgID, true})
				settle(w.to, id, h.Exit.Output)
				continue
			}
			runs = append(runs, ran{w.to, msgID, false})
			settle(w.to, id, outputOf(w.to))
		}
	}
	settle("a", "run-a", output)

	if len(ix) != 0 {
		t.Errorf("%d hops the node would not take: %v", len(ix), ix)
	}
	var want []string
	for i := range n {
		msgB := "run-a." + strconv.Itoa(i) + ".0"
		want = append(want, "b "+msgB)
		for j := range fan {
			want = append(want, "c "+ModuleRunID(runTime, "fr1", "b", msgB)+"."+strconv.Itoa(j)+".1")
		}
	}
	if len(runs) != len(want) {
		t.Fatalf("%d runs; want %d, each message once", len(runs), len(want))
	}
	for i, r := range runs {
		if got := r.module + " " + r.msg; got != want[i] {
			t.Errorf("run %d = %s; want %s", i, got, want[i])
		}
		// The hops are the first runs: the node takes the rest.
		if r.walked != (i < len(hops)) {
			t.Errorf("run %d (%s %s) walked %v; want the walk's runs first, then the node's", i, r.module, r.msg, r.walked)
		}
	}
}
