package wasm

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestDeadlineWithinTenPercent: a guest that never gives control back ends
// at its deadline, not after it. Each way of not returning — a loop in a
// command, a loop inside a warm reactor's exported function, a recursion
// tree, a recursion without end — for hand-written (WAT) and Go guests, in
// server and command mode, ends timeout (or crashed, where the stack runs
// out first) within 10% past a 1 s deadline, the run's whole call counted
// (a command's instantiation included). The patched wazero's loop headers
// and function entries are what make this hold (docs/decisions.md).
func TestDeadlineWithinTenPercent(t *testing.T) {
	requireGuests(t)
	const deadline = time.Second
	tree := recursionTree()
	spin := contract.Input{Message: json.RawMessage(`{"do":"spin"}`)}
	recurse := contract.Input{Message: json.RawMessage(`{"do":"recurse"}`)}
	cases := []struct {
		name  string
		file  string // a module file, or
		bin   []byte // its bytes
		mode  sandbox.Mode
		in    contract.Input
		want  sandbox.Outcome // or, for the recursions, either outcome (0)
		twice bool            // call once first, so that the spinning call is a warm instance's
	}{
		{name: "wat/command/loop", file: "testdata/spin.wasm", mode: sandbox.ModeCommand, want: sandbox.Timeout},
		{name: "wat/command/recursion-tree", bin: tree, mode: sandbox.ModeCommand, want: sandbox.Timeout},
		{name: "wat/server/loop-in-export", file: "testdata/spinreactor.wasm", mode: sandbox.ModeServer, want: sandbox.Timeout, twice: true},
		{name: "wat/command/loop-in-export", file: "testdata/spinreactor.wasm", mode: sandbox.ModeCommand, want: sandbox.Timeout},
		{name: "wat/server/recursion", file: "testdata/recurse.wasm", mode: sandbox.ModeServer, want: sandbox.Crashed, twice: true},
		{name: "wat/command/recursion", file: "testdata/recurse.wasm", mode: sandbox.ModeCommand, want: sandbox.Crashed},
		{name: "go-command/command/loop", file: goGuest("command") + "/main.wasm", mode: sandbox.ModeCommand, in: spin, want: sandbox.Timeout},
		{name: "go-command/server/loop", file: goGuest("command") + "/main.wasm", mode: sandbox.ModeServer, in: spin, want: sandbox.Timeout, twice: true},
		{name: "go-reactor/server/loop-in-export", file: goGuest("reactor") + "/main.wasm", mode: sandbox.ModeServer, in: spin, want: sandbox.Timeout, twice: true},
		{name: "go-reactor/command/loop-in-export", file: goGuest("reactor") + "/main.wasm", mode: sandbox.ModeCommand, in: spin, want: sandbox.Timeout},
		{name: "go-reactor/server/recursion", file: goGuest("reactor") + "/main.wasm", mode: sandbox.ModeServer, in: recurse, twice: true},
		{name: "go-command/command/recursion", file: goGuest("command") + "/main.wasm", mode: sandbox.ModeCommand, in: recurse},
	}
	d := newDriver(t, Config{CacheDir: guests.cache})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := sandbox.Spec{Mode: c.mode, Language: "wasm", Limits: sandbox.Limits{Memory: 256 << 20, Concurrency: 1}}
			var dep sandbox.Deployment
			if c.file != "" {
				spec.Service = "deadline-" + c.name
				dep = deployFile(t, d, c.file, spec)
			} else {
				var err error
				if dep, err = deployBinary(t, d, c.bin, spec); err != nil {
					t.Fatal(err)
				}
			}
			in := c.in
			in.RunID, in.Service, in.Trigger = "run-"+c.name, spec.Service, contract.Trigger{Kind: "manual"}
			if c.twice {
				// The first call leaves the instance (or, for a call that
				// crashes, the pool) warm: a short deadline ends it.
				if _, err := sandbox.Call(context.Background(), dep, in, 50*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			r, err := sandbox.Call(context.Background(), dep, in, deadline)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			// A Go guest's recursion grows its stack by copying it (in its
			// memory) and meets the deadline before the 256 MiB cap, or runs
			// out of stack: either outcome. wazero traps a WAT one when its
			// own stack reaches the patched 8 MiB ceiling, well before.
			if either := c.want == ""; r.Outcome != c.want && !(either && (r.Outcome == sandbox.Timeout || r.Outcome == sandbox.Crashed)) {
				t.Errorf("outcome %s (%s), want %s", r.Outcome, r.Error, c.want)
			}
			if c.want == sandbox.Crashed && !strings.Contains(r.Error, "stack overflow") {
				t.Errorf("crashed with %q, want a stack overflow", r.Error)
			}
			// The guarantee is 10%, held by the plain run of the tests. The
			// race detector slows the host's side of the stop several times
			// over (and CI runs two race passes on two cores at once): there
			// the bound is half the deadline, still far below a timeout's
			// grace.
			slack, pct := deadline/10, 10
			if raceEnabled {
				slack, pct = deadline/2, 50
			}
			if limit := deadline + slack; took > limit {
				t.Errorf("returned %v after the call began, past the deadline of %v by more than %d%% (%v)", took, deadline, pct, limit)
			}
			t.Logf("%s after %v (%s)", r.Outcome, took.Round(time.Millisecond), firstLine(r.Error))
		})
	}
}

// recursionTree is a command whose _start calls a function that calls
// itself twice at each of 30 levels (2^30 calls, no loop anywhere): only
// the check Deploy puts at every function's entry can stop it.
func recursionTree() []byte {
	dMinus1 := cat([]byte{0x20, 0}, i32c(1), []byte{0x6b}, call(1))
	return wasmModule(typeSection(), section(3, vec([]byte{typeVoid}, []byte{typeExit})), section(7, vec(exportOf("_start", 0, 0))),
		section(10, vec(body(i32c(30), call(1)), body([]byte{0x20, 0, 0x04, 0x40}, dMinus1, dMinus1, []byte{0x0b}))))
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i] + " …"
		}
	}
	if len(s) > 120 {
		return fmt.Sprintf("%.120s …", s)
	}
	return s
}
