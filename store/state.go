package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/contract"
)

// Snapshot is a service's state as read at one revision. Revision 0 means
// the service has no state yet.
type Snapshot struct {
	Values   map[string]json.RawMessage
	Revision uint64
	// Writers are the ids of the runs that wrote the newest revisions,
	// oldest first, at most MaxStateWriters: every committed revision names
	// its run, so a run whose record a crash lost can be found again.
	Writers []string
}

// MaxStateWriters is how many writer run ids a state object remembers. It
// bounds how many runs of one service can have committed state without
// their record at a crash (at most resources.concurrency, far fewer).
const MaxStateWriters = 64

// stateFormat marks a state object that carries its writers. An object
// without it is the older plain map of values.
const stateFormat = "andromeda.state/v2"

// stateRecord is how a state object is stored.
type stateRecord struct {
	Format  string                     `json:"format"`
	Values  map[string]json.RawMessage `json:"values"`
	Writers []string                   `json:"writers"`
}

func decodeState(b []byte) (stateRecord, error) {
	var rec stateRecord
	var probe struct {
		Format string `json:"format"`
	}
	if json.Unmarshal(b, &probe) == nil && probe.Format == stateFormat {
		if err := json.Unmarshal(b, &rec); err != nil {
			return rec, err
		}
	} else if err := json.Unmarshal(b, &rec.Values); err != nil {
		return rec, err
	}
	if rec.Values == nil {
		rec.Values = map[string]json.RawMessage{}
	}
	return rec, nil
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
	rec, err := decodeState(e.Value())
	if err != nil {
		return snap, fmt.Errorf("store: decode state of %s: %w", service, err)
	}
	return Snapshot{Values: rec.Values, Writers: rec.Writers, Revision: e.Revision()}, nil
}

// ApplyState applies a change on top of snap with compare-and-swap, naming
// run as the revision's writer: if the state moved since snap was read,
// nothing is written and ErrConflict is returned. It returns the new
// snapshot.
func (s *Store) ApplyState(ctx context.Context, service, run string, snap Snapshot, change *contract.StateChange) (Snapshot, error) {
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
	writers := append(slices.Clone(snap.Writers), run)
	if len(writers) > MaxStateWriters {
		writers = writers[len(writers)-MaxStateWriters:]
	}
	values, err := json.Marshal(next)
	if err != nil {
		return snap, fmt.Errorf("store: encode state of %s: %w", service, err)
	}
	// The cap is on the service's values, not on the bookkeeping.
	if len(values) > s.cfg.MaxStateBytes {
		return snap, fmt.Errorf("state of %s would be %d bytes, more than the %d allowed: %w", service, len(values), s.cfg.MaxStateBytes, ErrTooLarge)
	}
	b, err := json.Marshal(stateRecord{Format: stateFormat, Values: next, Writers: writers})
	if err != nil {
		return snap, fmt.Errorf("store: encode state of %s: %w", service, err)
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
	return Snapshot{Values: next, Writers: writers, Revision: rev}, nil
}
