package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// A run that changes state is written ahead: its record goes to the pending
// bucket before the state compare-and-swap, and leaves it once the record
// is in the runs stream. After a crash, ReconcilePending finds each pending
// run and records it as it was (its state committed: the state names it as
// a writer) or as interrupted (its state did not commit). So every state
// revision has its run, whatever moment the node died at.

func pendingKey(service, id string) string { return service + "." + id }

// PutPending writes r ahead of its state change.
//
// The copy is whole, output included, where one NATS message holds it:
// reconciling a run whose state committed plans its actions from it (a
// run record is cut at MaxRunBytes; this bucket has no such bound).
func (s *Store) PutPending(ctx context.Context, r Run) error {
	if r.Node == "" {
		r.Node = s.cfg.Node
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: encode run %s: %w", r.ID, err)
	}
	if max := s.js.Conn().MaxPayload(); max > 0 && int64(len(b)) > max-1024 {
		if b, err = s.encodeRun(&r); err != nil {
			return err
		}
	}
	if _, err := s.pending.Put(ctx, pendingKey(r.Service, r.ID), b); err != nil {
		return fmt.Errorf("store: write ahead run %s of %s: %w", r.ID, r.Service, err)
	}
	return nil
}

// DeletePending drops a pending record once its run is recorded (or its
// state write was abandoned).
func (s *Store) DeletePending(ctx context.Context, service, id string) error {
	err := s.pending.Purge(ctx, pendingKey(service, id))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("store: drop pending run %s of %s: %w", id, service, err)
	}
	return nil
}

// Reconciled says what ReconcilePending did with one pending run.
type Reconciled struct {
	Run       Run
	Committed bool // its state change was committed: the run is recorded as it ended
}

// ReconcilePending records every pending run: as it ended when its state
// change was committed, else as an interrupted error. Call it at start,
// before any run of the services can write state. plan, when set, is
// called with each run that committed before it is recorded (and with one
// found recorded already), so that its actions are planned before anyone
// can see the run: it must be idempotent.
//
// With only set, the runs pending of other nodes (their Run.Node) are
// left alone: in a cluster they are runs in flight on nodes alive.
func (s *Store) ReconcilePending(ctx context.Context, only string, plan func(context.Context, Run) error) ([]Reconciled, error) {
	keys, err := s.pending.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: list pending runs: %w", err)
	}
	var out []Reconciled
	var errs []error
	for key := range keys.Keys() {
		e, err := s.pending.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("store: read pending run %s: %w", key, err))
			continue
		}
		var r Run
		if err := json.Unmarshal(e.Value(), &r); err != nil || r.ID == "" || r.Service == "" {
			errs = append(errs, fmt.Errorf("store: pending run %s: undecodable record (%v); dropped", key, err))
			s.pending.Purge(ctx, key)
			continue
		}
		if only != "" && r.Node != "" && r.Node != only {
			continue
		}
		// Recorded already (the node died between the record and the
		// drop): the stream's duplicate window may be long past, so look.
		if _, err := s.Run(ctx, r.Service, r.ID); err == nil {
			if plan != nil {
				if err := plan(ctx, r); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			if err := s.DeletePending(ctx, r.Service, r.ID); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		snap, err := s.State(ctx, r.Service)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rc := Reconciled{Committed: slices.Contains(snap.Writers, r.ID)}
		if !rc.Committed {
			r.Outcome = "error"
			r.Output = nil
			r.Noop = ""
			r.Error = "interrupted: the node stopped before this run's state change was committed; nothing it asked for took effect"
		}
		if rc.Committed && plan != nil {
			if err := plan(ctx, r); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := s.AppendRun(ctx, r); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.DeletePending(ctx, r.Service, r.ID); err != nil {
			errs = append(errs, err)
		}
		rc.Run = r
		out = append(out, rc)
	}
	return out, errors.Join(errs...)
}
