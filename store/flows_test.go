package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/store"
)

// TestFlows: a flow record is created once (a second create conflicts),
// updated only at the revision read, listed, and removed only at its
// revision.
func TestFlows(t *testing.T) {
	s := open(t, store.Config{})
	ctx := context.Background()
	rec := store.FlowRecord{ID: "orders", Version: "1.0.0", Owner: "operator", Digest: "sha256:00", Applied: time.Now().UTC(), Flow: json.RawMessage(`{"id":"orders"}`)}
	rev, err := s.PutFlow(ctx, rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutFlow(ctx, rec, 0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second create = %v, want store.ErrConflict", err)
	}
	got, err := s.Flow(ctx, "orders")
	if err != nil || got.Revision != rev || got.Version != "1.0.0" || string(got.Flow) != `{"id":"orders"}` {
		t.Fatalf("Flow = %+v, %v", got, err)
	}
	rec.Version = "1.1.0"
	rev2, err := s.PutFlow(ctx, rec, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutFlow(ctx, rec, rev); !errors.Is(err, store.ErrConflict) {
		t.Errorf("an update at an old revision = %v, want store.ErrConflict", err)
	}
	other := rec
	other.ID = "alerts"
	if _, err := s.PutFlow(ctx, other, 0); err != nil {
		t.Fatal(err)
	}
	list, err := s.Flows(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "alerts" || list[1].ID != "orders" || list[1].Version != "1.1.0" {
		t.Fatalf("Flows = %+v, %v", list, err)
	}
	if err := s.RemoveFlow(ctx, "orders", rev); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a remove at an old revision = %v, want store.ErrConflict", err)
	}
	if err := s.RemoveFlow(ctx, "orders", rev2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flow(ctx, "orders"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Flow after remove = %v, want store.ErrNotFound", err)
	}
	if list, err := s.Flows(ctx); err != nil || len(list) != 1 {
		t.Errorf("Flows after remove = %+v, %v", list, err)
	}
	// Created again after a removal: the deletion marker is no record.
	if _, err := s.PutFlow(ctx, rec, 0); err != nil {
		t.Errorf("create after remove = %v", err)
	}
}
