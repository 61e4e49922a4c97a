package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// The tests below make a run's state write lose the compare-and-swap for
// certain: inside the run's invocation, after the node has read the state
// and before it writes it back, they fire another run of the same service
// and let it commit. The guest is the heartbeat example, which counts its
// beats in state and asks for a log action every fifth beat.

// contended is the message that marks the run whose attempts are
// interfered with; heartbeat ignores its message.
const contended = `"contended"`

// manualHeartbeat is the heartbeat example fired by hand only (its cron
// trigger would add runs of its own), with room for two runs at once and a
// timeout that leaves time for a run fired inside another.
func manualHeartbeat(t *testing.T, n *testNode) {
	t.Helper()
	dir := example(t, "heartbeat")
	editManifest(t, dir,
		`  - {kind: cron, schedule: "*/15 * * * * *"}`+"\n", "",
		"resources: {memory: 32Mi, timeout: 2s}", "resources: {memory: 32Mi, timeout: 30s, concurrency: 2}")
	if _, err := n.op.Submit(context.Background(), pack(t, dir)); err != nil {
		t.Fatal(err)
	}
}

// attempts records what happened in each attempt of the contended run.
type attempts struct {
	mu     sync.Mutex
	asked  []sandbox.Result // what the guest returned, by attempt
	rivals []api.Run        // runs fired inside it, in order
	errs   []error
}

func (a *attempts) add(res sandbox.Result) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, res)
	return len(a.asked)
}

func (a *attempts) rival(r api.Run, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rivals = append(a.rivals, r)
	if err != nil {
		a.errs = append(a.errs, err)
	}
}

func (a *attempts) get() ([]sandbox.Result, []api.Run, []error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.asked), slices.Clone(a.rivals), slices.Clone(a.errs)
}

// beats reads the heartbeat's count from its state, with the writers of
// the newest revisions.
func beats(t *testing.T, n *testNode) (int, []string) {
	t.Helper()
	snap, err := node.ServiceState(context.Background(), n.Node, "heartbeat")
	if err != nil {
		t.Fatal(err)
	}
	var b int
	if err := json.Unmarshal(snap.Values["beats"], &b); err != nil {
		t.Fatalf("state %v: beats: %v", snap.Values, err)
	}
	return b, snap.Writers
}

// TestStateConflictRetried: a run whose state write loses the
// compare-and-swap is invoked again on fresh state and commits. The
// contended run loses its first three attempts, each to a run fired inside
// it that commits first. Its fourth attempt holds the service's write lock
// (after serialOnConflict conflicts), so the run fired inside that one
// waits, reads what the fourth attempt wrote, and commits after it. Every
// run commits once, and the state counts five beats written in that order.
func TestStateConflictRetried(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	manualHeartbeat(t, n)
	var got attempts
	late := make(chan api.Run, 1)
	var inFourth atomic.Bool // the contended run's fourth attempt is being invoked
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		if !bytes.Equal(in.Message, []byte(contended)) {
			if inFourth.Load() {
				t.Errorf("run %s was invoked during the fourth attempt, which holds the write lock", in.RunID)
			}
			return invoke()
		}
		got.mu.Lock()
		a := len(got.asked) + 1
		got.mu.Unlock()
		if a == 4 {
			// Fired before this attempt's guest runs: it must wait for the
			// lock, then read what this attempt writes.
			inFourth.Store(true)
			defer inFourth.Store(false)
			go func() {
				r, err := n.op.Fire(context.Background(), "heartbeat", nil)
				got.rival(r, err)
				late <- r
			}()
		}
		exit, err := invoke()
		got.add(sandbox.Judge(exit))
		if a <= 3 {
			got.rival(n.op.Fire(ctx, "heartbeat", nil)) // commits before this attempt writes
		}
		return exit, err
	})

	run, err := n.op.Fire(ctx, "heartbeat", json.RawMessage(contended))
	if err != nil {
		t.Fatal(err)
	}
	if run.Outcome != "noop" || !strings.HasPrefix(run.Noop, "beat 4:") || run.Attempts != 4 {
		t.Fatalf("contended run = %+v; want beat 4 committed on the fourth attempt", run)
	}
	var last api.Run
	select {
	case last = <-late:
	case <-time.After(30 * time.Second):
		t.Fatal("the run fired inside the fourth attempt did not end in 30 s")
	}
	asked, rivals, errs := got.get()
	if len(errs) > 0 {
		t.Fatalf("rival runs: %v", errs)
	}
	if len(asked) != 4 {
		t.Fatalf("the contended run was invoked %d times, want 4", len(asked))
	}
	// Each attempt ran on the state the rival before it left.
	for i, res := range asked {
		if want := json.RawMessage(string(rune('1' + i))); res.Output.State == nil || !bytes.Equal(res.Output.State.Set["beats"], want) {
			t.Errorf("attempt %d asked for %+v, want beats %s", i+1, res.Output.State, want)
		}
	}
	for i, r := range rivals[:3] {
		if r.Outcome != "noop" || !strings.HasPrefix(r.Noop, "beat "+string(rune('1'+i))+":") || r.Attempts != 1 {
			t.Errorf("rival %d = %+v; want beat %d committed on its first attempt", i+1, r, i+1)
		}
	}
	if last.Outcome != "ok" || last.Attempts != 1 || len(last.Output.Actions) != 1 || last.Output.Actions[0].Kind != "log" {
		t.Errorf("run fired inside the fourth attempt = %+v; want beat 5, its log action, committed on its first attempt after the fourth", last)
	}
	if got, err := n.op.Run(ctx, "heartbeat", run.ID); err != nil || got.Attempts != 4 || got.Noop != run.Noop {
		t.Errorf("contended run as recorded = %+v, %v; want it with its 4 attempts", got, err)
	}
	b, writers := beats(t, n)
	want := []string{rivals[0].ID, rivals[1].ID, rivals[2].ID, run.ID, last.ID}
	if b != 5 || !slices.Equal(writers, want) {
		t.Errorf("state = %d beats written by %v; want 5 written by %v (three rivals, the contended run, the late one)", b, writers, want)
	}
}

// TestStateConflictDropsActionsAtLastAttempt: with state.attempts 2, a run
// that loses the compare-and-swap on both attempts gives up: it is
// recorded as an error saying its state changed under it on each attempt
// and its actions were dropped, without its output, though its last
// attempt asked for a log action; the state is the rivals', and names
// every writer but it.
func TestStateConflictDropsActionsAtLastAttempt(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv, func(c *node.Config) { c.State.Attempts = 2 })
	manualHeartbeat(t, n)
	var seeds []string
	for range 3 {
		r, err := n.op.Fire(ctx, "heartbeat", nil)
		if err != nil || r.Outcome != "noop" {
			t.Fatalf("seed run = %+v, %v", r, err)
		}
		seeds = append(seeds, r.ID)
	}
	var got attempts
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		if !bytes.Equal(in.Message, []byte(contended)) {
			return invoke()
		}
		exit, err := invoke()
		got.add(sandbox.Judge(exit))
		got.rival(n.op.Fire(ctx, "heartbeat", nil))
		return exit, err
	})

	run, err := n.op.Fire(ctx, "heartbeat", json.RawMessage(contended))
	if err != nil {
		t.Fatal(err)
	}
	asked, rivals, errs := got.get()
	if len(errs) > 0 {
		t.Fatalf("rival runs: %v", errs)
	}
	const why = "state: changed by other runs on each of 2 attempts; actions dropped"
	if run.Outcome != "error" || run.Error != why || run.Attempts != 2 || run.Output != nil || len(asked) != 2 {
		t.Fatalf("contended run = %+v after %d invocations; want an error %q after 2 attempts, without output", run, len(asked), why)
	}
	// What was dropped: on its last attempt it asked for beat 5 and its log
	// action.
	if out := asked[1].Output; asked[1].Outcome != sandbox.OK || len(out.Actions) != 1 || out.Actions[0].Kind != "log" || string(out.State.Set["beats"]) != "5" {
		t.Errorf("last attempt asked for %+v (%s); want beat 5 with a log action", out, asked[1].Outcome)
	}
	if rivals[0].Outcome != "noop" || rivals[1].Outcome != "ok" || len(rivals[1].Output.Actions) != 1 {
		t.Errorf("rivals = %+v; want beat 4 and beat 5 with its log action committed", rivals)
	}
	if got, err := n.op.Run(ctx, "heartbeat", run.ID); err != nil || got.Outcome != "error" || got.Error != why || got.Attempts != 2 || got.Output != nil {
		t.Errorf("contended run as recorded = %+v, %v; want the error %q without output", got, err, why)
	}
	b, writers := beats(t, n)
	want := append(seeds, rivals[0].ID, rivals[1].ID)
	if b != 5 || !slices.Equal(writers, want) {
		t.Errorf("state = %d beats written by %v; want 5 written by the seeds and the rivals %v, not by %s", b, writers, want, run.ID)
	}
	runs, err := n.op.Runs(ctx, "heartbeat", 100)
	if err != nil || len(runs) != 6 {
		t.Errorf("recorded runs = %d, %v; want 6 (3 seeds, 2 rivals, the contended run)", len(runs), err)
	}
}
