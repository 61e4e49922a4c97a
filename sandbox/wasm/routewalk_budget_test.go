package wasm

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// fixedReactor is a reactor whose output is always output: a data segment
// at 1024; its input goes at 4 MiB, in a memory of 128 pages (8 MiB).
func fixedReactor(output []byte) []byte {
	return wasmModule(typeSection(),
		section(sectionFunction, vec([]byte{typeAlloc}, []byte{typeInvoke})),
		section(sectionMemory, vec(lim(128, 128))),
		section(sectionExport, vec(exportOf(exportAlloc, 0, 0), exportOf(exportInvoke, 0, 1), exportOf(exportMemory, 2, 0))),
		section(sectionCode, vec(
			body(i32c(4<<20)),
			body(i64c(1024<<32|int64(len(output)))),
		)),
		section(sectionData, vec(cat([]byte{0}, i32c(1024), []byte{0x0b}, name(string(output))))),
	)
}

// TestRouteWalkBytes runs a flow's route a → b → c in a stateless reactor
// whose every run emits 8 messages of 128 KiB on out: walked to its end,
// the route would make 72 hops and hold 72 MiB. The walk stops once it
// holds sandbox.MaxWalkBytes, every guest call after a's is a hop, and
// the hops are the walk's first, in order, so the node routes the rest.
func TestRouteWalkBytes(t *testing.T) {
	const fan, size = 8, 128 << 10
	em := `{"port":"out","message":"` + strings.Repeat("x", size) + `"}`
	output := []byte(`{"emit":[` + strings.Repeat(em+",", fan-1) + em + `]}`)
	d := newDriver(t, Config{})
	dep, err := deployBinary(t, d, fixedReactor(output), sandbox.Spec{Mode: sandbox.ModeServer, Limits: sandbox.Limits{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	dep.onPhase = func(phase string) {
		if phase == exportInvoke {
			calls++
		}
	}

	runTime := []byte{1, 2, 3, 4, 5, 6}
	rj, _ := json.Marshal(sandbox.Route{FlowRun: "fr1", RunTime: hex.EncodeToString(runTime), Max: 10000, To: map[string][]sandbox.RouteDest{
		"out": {{Wire: 0, Module: "b", Port: "in", Name: "flow f/b",
			To: map[string][]sandbox.RouteDest{"out": {{Wire: 1, Module: "c", Port: "in", Name: "flow f/c"}}}}},
	}})
	input, _ := json.Marshal(contract.Input{RunID: "run-a", Service: "limits", Trigger: contract.Trigger{Kind: "flow", Name: "flow f/a",
		Flow: &contract.FlowInfo{Flow: "f", Version: "1.0.0", Run: "fr1", Module: "a", Port: "in", Message: "fr1"}}})
	var hops []sandbox.Hop
	exit, err := dep.Invoke(sandbox.WithRoute(context.Background(), rj, &hops), input)
	if err != nil || exit.Outcome != sandbox.OK {
		t.Fatalf("Invoke = %s %.200s, %v; want ok", exit.Outcome, exit.Detail, err)
	}

	var want []string // the walk's order, to its end
	for i := range fan {
		msgB := "run-a." + strconv.Itoa(i) + ".0"
		want = append(want, fmt.Sprintf("b from run-a emit %d wire 0", i))
		for j := range fan {
			want = append(want, fmt.Sprintf("c from %s emit %d wire 1", sandbox.ModuleRunID(runTime, "fr1", "b", msgB), j))
		}
	}
	if len(hops) == 0 || len(hops) >= len(want) {
		t.Fatalf("%d hops of %d; want the walk to stop at %d MiB held", len(hops), len(want), sandbox.MaxWalkBytes>>20)
	}
	if calls != 1+len(hops) {
		t.Errorf("%d guest calls for a and %d hops; want a hop for every call after a's", calls, len(hops))
	}
	kept := 0
	for i, h := range hops {
		kept += len(h.Exit.Output)
		if got := fmt.Sprintf("%s from %s emit %d wire %d", h.Module, h.From, h.Emit, h.Wire); got != want[i] || h.Exit.Outcome != sandbox.OK {
			t.Errorf("hop %d = %s, %s; want %s, ok", i, got, h.Exit.Outcome, want[i])
		}
	}
	if kept > sandbox.MaxWalkBytes+len(output) {
		t.Errorf("the hops hold %d bytes; want at most %d and one output", kept, sandbox.MaxWalkBytes)
	}
}
