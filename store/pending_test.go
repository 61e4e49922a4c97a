package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
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
	committed := api.Run{ID: "run-committed", Service: "svc", Outcome: "noop", Noop: "counted"}
	if err := s.PutPending(ctx, committed); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyState(ctx, "svc", committed.ID, store.Snapshot{}, set); err != nil {
		t.Fatal(err)
	}
	// The node dies here: state committed, run not recorded.
	cut := api.Run{ID: "run-cut", Service: "svc", Outcome: "noop", Noop: "counted"}
	if err := s.PutPending(ctx, cut); err != nil {
		t.Fatal(err)
	}
	// ... and here for another run: written ahead, state never committed.
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
	got, err := s.ReconcilePending(ctx)
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
	byID := map[string]api.Run{}
	for _, r := range runs {
		byID[r.ID] = r
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
	if again, err := s.ReconcilePending(ctx); err != nil || len(again) != 0 {
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
