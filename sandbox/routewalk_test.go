package sandbox

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/contract"
)

// TestWalkRoute walks a route a → {b, c}, b → d with a call that answers
// as each module's config says: every hop gets the sender's input with its
// own run id (the node's id0 for a first emit, derived otherwise), message,
// config, trigger name and place in the flow; a hop's emits go on along
// its own route; a hop that does not end ok goes no further; the walk
// stops at max hops, and at a call the runner failed.
func TestWalkRoute(t *testing.T) {
	runTime := []byte{1, 2, 3, 4, 5, 6}
	route := Route{FlowRun: "fr1", RunTime: hex.EncodeToString(runTime), Max: 10, To: map[string][]RouteDest{
		"out": {
			{Wire: 0, Module: "b", Port: "in", Name: "flow f/b", Config: map[string]any{"emit": "out"}, ID0: "given-b",
				To: map[string][]RouteDest{"out": {{Wire: 2, Module: "d", Port: "in", Name: "flow f/d", Config: map[string]any{"emit": "none"}}}}},
			{Wire: 1, Module: "c", Port: "side", Name: "flow f/c", Config: map[string]any{"fail": true}},
		},
	}}
	in := contract.Input{RunID: "run-a", Service: "s", Trigger: contract.Trigger{Kind: "flow", Name: "flow f/a",
		Flow: &contract.FlowInfo{Flow: "f", Version: "1.0.0", Run: "fr1", Module: "a", Port: "in", Message: "fr1"}},
		Config: map[string]any{"emit": "out"}, FlowContext: map[string]json.RawMessage{"k": json.RawMessage(`1`)}}
	input, _ := json.Marshal(in)
	// a emits twice on out: the first (index 0) takes the node's ids,
	// the second is derived.
	output := []byte(`{"emit":[{"port":"out","message":{"n":1}},{"port":"aside","message":{}},{"port":"out","message":{"n":2}}]}`)
	var got []contract.Input
	call := func(_ context.Context, b []byte) (Exit, error) {
		var hin contract.Input
		if err := json.Unmarshal(b, &hin); err != nil {
			t.Fatalf("hop input %s: %v", b, err)
		}
		got = append(got, hin)
		switch {
		case hin.Config["fail"] == true:
			return Exit{Outcome: Crashed, Detail: "refused"}, nil
		case hin.Config["emit"] == "out":
			return Exit{Outcome: OK, Output: []byte(`{"emit":[{"port":"out","message":` + string(hin.Message) + `}]}`)}, nil
		default:
			return Exit{Outcome: OK, Output: []byte(`{"noop":"end"}`)}, nil
		}
	}
	rj, _ := json.Marshal(route)
	hops := WalkRoute(context.Background(), rj, input, output, call)

	idB2 := ModuleRunID(runTime, "fr1", "b", "run-a.2.0")
	want := []string{
		"b given-b run-a.0.0 from run-a emit 0 wire 0 ok",
		"d " + ModuleRunID(runTime, "fr1", "d", "given-b.0.2") + " given-b.0.2 from given-b emit 0 wire 2 ok",
		"c " + ModuleRunID(runTime, "fr1", "c", "run-a.0.1") + " run-a.0.1 from run-a emit 0 wire 1 crashed",
		"b " + idB2 + " run-a.2.0 from run-a emit 2 wire 0 ok",
		"d " + ModuleRunID(runTime, "fr1", "d", idB2+".0.2") + " " + idB2 + ".0.2 from " + idB2 + " emit 0 wire 2 ok",
		"c " + ModuleRunID(runTime, "fr1", "c", "run-a.2.1") + " run-a.2.1 from run-a emit 2 wire 1 crashed",
	}
	if len(hops) != len(want) || len(got) != len(want) {
		t.Fatalf("%d hops, %d calls; want %d", len(hops), len(got), len(want))
	}
	for i, h := range hops {
		hin := got[i]
		line := fmt.Sprintf("%s %s %s from %s emit %d wire %d %s", h.Module, h.RunID, hin.Trigger.Flow.Message, h.From, h.Emit, h.Wire, h.Exit.Outcome)
		if line != want[i] {
			t.Errorf("hop %d = %s\n want %s", i, line, want[i])
		}
		d := map[string]string{"b": "flow f/b", "c": "flow f/c", "d": "flow f/d"}[h.Module]
		if hin.RunID != h.RunID || hin.Trigger.Name != d || hin.Trigger.Flow.Module != h.Module || hin.Service != "s" ||
			hin.Trigger.Flow.Run != "fr1" || string(hin.FlowContext["k"]) != "1" {
			t.Errorf("hop %d input = %+v (flow %+v)", i, hin, *hin.Trigger.Flow)
		}
		if from := map[string]string{"b": "a", "c": "a", "d": "b"}[h.Module]; hin.Trigger.Flow.From != from {
			t.Errorf("hop %d: from module %q, want %q", i, hin.Trigger.Flow.From, from)
		}
	}
	if got[0].Trigger.Flow.Port != "in" || got[2].Trigger.Flow.Port != "side" || string(got[0].Message) != `{"n":1}` || string(got[3].Message) != `{"n":2}` {
		t.Errorf("ports and messages: %+v %+v", got[0], got[2])
	}

	// max bounds the hops.
	route.Max = 2
	rj, _ = json.Marshal(route)
	got = nil
	if hops := WalkRoute(context.Background(), rj, input, output, call); len(hops) != 2 {
		t.Errorf("max 2: %d hops", len(hops))
	}
	// A call the runner failed ends the walk, without a hop for it.
	route.Max = 10
	rj, _ = json.Marshal(route)
	calls := 0
	failing := func(ctx context.Context, b []byte) (Exit, error) {
		if calls++; calls == 2 {
			return Exit{}, errors.New("the runner failed")
		}
		return call(ctx, b)
	}
	if hops := WalkRoute(context.Background(), rj, input, output, failing); len(hops) != 1 || calls != 2 {
		t.Errorf("a failed call: %d hops after %d calls, want 1 after 2", len(hops), calls)
	}
	// No route, a bad route, an input without a flow: no hops, no calls.
	calls = 0
	for _, c := range []struct{ route, input string }{{"", string(input)}, {"{", string(input)}, {string(rj), `{"run_id":"x"}`}} {
		if hops := WalkRoute(context.Background(), []byte(c.route), []byte(c.input), output, failing); len(hops) != 0 || calls != 0 {
			t.Errorf("route %q input %.20q: %d hops, %d calls", c.route, strings.TrimSpace(c.input), len(hops), calls)
		}
	}
}
