package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/store"
)

// TestPendingSurvivesACrash simulates the node dying at each point of a
// state-writing run (after the write-ahead, after the state commit) by
// closing the store there, and checks that reopening records each run the
// way it ended: the committed one as it was, the other as interrupted; so
// every state revision has its run and no pending record is left.
func TestPendingSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := bus.Open(ctx, bus.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctx, b, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	set := &contract.StateChange{Set: map[string]json.RawMessage{"n": json.RawMessage(`1`)}}
	committed := store.Run{ID: "run-committed", Service: "svc", Outcome: "noop", Noop: "counted"}
	if err := s.PutPending(ctx, committed); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyState(ctx, "svc", committed.ID, store.Snapshot{}, set); err != nil {
		t.Fatal(err)
	}
	// The node dies here: state committed, run not recorded.
	cut := store.Run{ID: "run-cut", Service: "svc", Outcome: "noop", Noop: "counted"}
	if err := s.PutPending(ctx, cut); err != nil {
		t.Fatal(err)
	}
	// ... and here for another run: written ahead, state never committed.
	// A third was recorded, but the node died before dropping its pending
	// copy: it must not be recorded twice.
	done := store.Run{ID: "run-done", Service: "svc", Outcome: "noop", Noop: "counted"}
	if err := s.PutPending(ctx, done); err != nil {
		t.Fatal(err)
	}
	snap0, _ := s.State(ctx, "svc")
	if _, err := s.ApplyState(ctx, "svc", done.ID, snap0, set); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendRun(ctx, done); err != nil {
		t.Fatal(err)
	}
	b.Close()

	b, err = bus.Open(ctx, bus.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err = store.Open(ctx, b, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ReconcilePending(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("reconciled %d runs, want 2: %+v", len(got), got)
	}
	runs, err := s.Runs(ctx, "svc", 10)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]store.Run{}
	for _, r := range runs {
		if _, dup := byID[r.ID]; dup {
			t.Errorf("run %s recorded twice", r.ID)
		}
		byID[r.ID] = r
	}
	if len(runs) != 3 {
		t.Errorf("%d runs recorded, want 3: %+v", len(runs), runs)
	}
	if r := byID[committed.ID]; r.Outcome != "noop" || r.Noop != "counted" {
		t.Errorf("committed run recorded as %+v, want it as it ended", r)
	}
	if r := byID[cut.ID]; r.Outcome != "error" || r.Error == "" {
		t.Errorf("interrupted run recorded as %+v, want an error saying it was interrupted", r)
	}
	snap, err := s.State(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range snap.Writers {
		if _, ok := byID[w]; !ok {
			t.Errorf("state revision written by %s has no run", w)
		}
	}
	// Nothing is left pending: a second reconcile finds nothing.
	if again, err := s.ReconcilePending(ctx, "", nil); err != nil || len(again) != 0 {
		t.Fatalf("second reconcile = %+v, %v", again, err)
	}
}

// TestStateWritersBounded: a state object remembers its newest writers,
// at most MaxStateWriters, and they do not count as the service's values.
func TestStateWritersBounded(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	snap := store.Snapshot{}
	var err error
	for i := 0; i < store.MaxStateWriters+10; i++ {
		id := "r" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		snap, err = s.ApplyState(ctx, "svc", id, snap, &contract.StateChange{Set: map[string]json.RawMessage{"i": json.RawMessage(`1`)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.State(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Writers) != store.MaxStateWriters || string(got.Values["i"]) != "1" || len(got.Values) != 1 {
		t.Fatalf("state = %d writers, values %v", len(got.Writers), got.Values)
	}
}

// BenchmarkStateRun measures what a state-writing run costs the store,
// side by side: the state commit and the run record alone (as before the
// write-ahead), and with the run written ahead and dropped after.
func BenchmarkStateRun(b *testing.B) {
	for _, ahead := range []bool{false, true} {
		name := "state+record"
		if ahead {
			name = "pending+state+record+drop"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			s := open(b, store.Config{})
			snap := store.Snapshot{}
			i := 0
			for b.Loop() {
				i++
				r := store.Run{ID: fmt.Sprintf("r%08d", i), Service: "svc", Outcome: "noop", Noop: "counted"}
				if ahead {
					if err := s.PutPending(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
				var err error
				snap, err = s.ApplyState(ctx, "svc", r.ID, snap, &contract.StateChange{Set: map[string]json.RawMessage{"n": json.RawMessage(strconv.Itoa(i))}})
				if err != nil {
					b.Fatal(err)
				}
				if err := s.AppendRun(ctx, r); err != nil {
					b.Fatal(err)
				}
				if ahead {
					if err := s.DeletePending(ctx, r.Service, r.ID); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// TestReconcilePendingOnlyOwn: where nodes share the store, a node
// reconciles its own pending runs only; another node's are runs in
// flight there, left alone.
func TestReconcilePendingOnlyOwn(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{Node: "n1"})
	mine := store.Run{ID: "run-mine", Service: "svc", Outcome: "ok"}
	theirs := store.Run{ID: "run-theirs", Service: "svc", Outcome: "ok", Node: "n2"}
	for _, r := range []store.Run{mine, theirs} {
		if err := s.PutPending(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ReconcilePending(ctx, "n1", nil)
	if err != nil || len(got) != 1 || got[0].Run.ID != mine.ID {
		t.Fatalf("ReconcilePending(n1) = %+v, %v; want run-mine only", got, err)
	}
	if _, err := s.Run(ctx, "svc", theirs.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("n2's pending run recorded by n1: %v", err)
	}
	if got, err := s.ReconcilePending(ctx, "n2", nil); err != nil || len(got) != 1 || got[0].Run.ID != theirs.ID {
		t.Errorf("ReconcilePending(n2) = %+v, %v; want run-theirs, still pending", got, err)
	}
}

// TestPendingKeepsLargeOutput: a run whose output is larger than a run
// record holds (its state change, say) is written ahead whole, so that
// reconciling it after its state committed plans its actions.
func TestPendingKeepsLargeOutput(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	big := json.RawMessage(`"` + strings.Repeat("x", 200<<10) + `"`)
	set := &contract.StateChange{Set: map[string]json.RawMessage{"blob": big}}
	r := store.Run{ID: "run-big", Service: "svc", Outcome: "ok", Output: &contract.Output{State: set,
		Actions: []contract.Action{{Kind: "log", Params: json.RawMessage(`{"message":"done"}`)}}}}
	if err := s.PutPending(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyState(ctx, "svc", r.ID, store.Snapshot{}, set); err != nil {
		t.Fatal(err)
	}
	var planned []store.Run
	if _, err := s.ReconcilePending(ctx, "", func(_ context.Context, r store.Run) error {
		planned = append(planned, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(planned) != 1 || planned[0].Output == nil || len(planned[0].Output.Actions) != 1 {
		t.Fatalf("planned %+v; want run-big with its action", planned)
	}
}
