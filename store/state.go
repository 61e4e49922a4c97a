package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/contract"
)

// Snapshot is a service's state as read at one revision. Revision 0 means
// the service has no state yet.
type Snapshot struct {
	Values   map[string]json.RawMessage
	Revision uint64
}

// State reads a service's state snapshot.
func (s *Store) State(ctx context.Context, service string) (Snapshot, error) {
	snap := Snapshot{Values: map[string]json.RawMessage{}}
	e, err := s.state.Get(ctx, service)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return snap, nil
	}
	if err != nil {
		return snap, fmt.Errorf("store: get state of %s: %w", service, err)
	}
	if err := json.Unmarshal(e.Value(), &snap.Values); err != nil {
		return snap, fmt.Errorf("store: decode state of %s: %w", service, err)
	}
	snap.Revision = e.Revision()
	return snap, nil
}

// ApplyState applies a change on top of snap with compare-and-swap: if the
// state moved since snap was read, nothing is written and ErrConflict is
// returned. It returns the new snapshot.
func (s *Store) ApplyState(ctx context.Context, service string, snap Snapshot, change *contract.StateChange) (Snapshot, error) {
	if change.Empty() {
		return snap, nil
	}
	next := make(map[string]json.RawMessage, len(snap.Values)+len(change.Set))
	for k, v := range snap.Values {
		next[k] = v
	}
	for _, k := range change.Delete {
		delete(next, k)
	}
	for k, v := range change.Set {
		if !json.Valid(v) {
			return snap, fmt.Errorf("state.set[%q]: value is not valid JSON", k)
		}
		next[k] = v
	}
	b, err := json.Marshal(next)
	if err != nil {
		return snap, fmt.Errorf("store: encode state of %s: %w", service, err)
	}
	if len(b) > s.cfg.MaxStateBytes {
		return snap, fmt.Errorf("state of %s would be %d bytes, more than the %d allowed: %w", service, len(b), s.cfg.MaxStateBytes, ErrTooLarge)
	}
	var rev uint64
	if snap.Revision == 0 {
		rev, err = s.state.Create(ctx, service, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return snap, ErrConflict
		}
	} else {
		rev, err = s.state.Update(ctx, service, b, snap.Revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return snap, ErrConflict
		}
	}
	if err != nil {
		return snap, fmt.Errorf("store: write state of %s: %w", service, err)
	}
	return Snapshot{Values: next, Revision: rev}, nil
}
