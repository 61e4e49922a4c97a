package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/store"
)

// maxUnrecorded bounds the runs held in memory for a store that refuses
// them. Beyond it the oldest is dropped and counted lost.
const maxUnrecorded = 10000

// unrecorded holds runs that ended but that the store did not acknowledge.
// Their callers were told so (the run is not done); the node keeps retrying
// them until the store takes them, so that a store back from a full disk
// gets its history whole. The run id is the record's message id, so a
// retry that raced an acknowledgement lost in transit is stored once.
type unrecorded struct {
	mu   sync.Mutex
	runs []store.Run
	kick chan struct{}

	lost     atomic.Int64 // dropped: over maxUnrecorded, or still held at Close
	recorded atomic.Int64 // stored late by a retry
}

func newUnrecorded() *unrecorded {
	return &unrecorded{kick: make(chan struct{}, 1)}
}

func (u *unrecorded) add(r store.Run) {
	u.mu.Lock()
	if len(u.runs) >= maxUnrecorded {
		u.runs = u.runs[1:]
		u.lost.Add(1)
	}
	u.runs = append(u.runs, r)
	u.mu.Unlock()
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// held reports whether the run with id waits here to be recorded.
func (u *unrecorded) held(id string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range u.runs {
		if r.ID == id {
			return true
		}
	}
	return false
}

// Len reports how many runs wait to be recorded.
func (u *unrecorded) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.runs)
}

// retry records held runs until ctx ends, every few seconds while any are
// held. Runs still held at the end are logged as lost, loudly.
func (u *unrecorded) retry(ctx context.Context, save func(context.Context, store.Run) error, log *slog.Logger, healthy func() error) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if n := u.Len(); n > 0 {
				u.lost.Add(int64(n))
				log.Error("runs lost: the store never recorded them", "count", n)
			}
			return
		case <-tick.C:
		case <-u.kick:
			continue // the caller retries right away; wait for the tick
		}
		u.flush(ctx, save, log, healthy)
	}
}

func (u *unrecorded) flush(ctx context.Context, save func(context.Context, store.Run) error, log *slog.Logger, healthy func() error) {
	for {
		u.mu.Lock()
		if len(u.runs) == 0 {
			u.mu.Unlock()
			return
		}
		r := u.runs[0]
		u.mu.Unlock()
		if healthy != nil && healthy() != nil {
			return // the store says it cannot write: wait for the next tick
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := save(actx, r)
		cancel()
		if err != nil {
			return // the store still refuses; try again on the next tick
		}
		u.mu.Lock()
		if len(u.runs) > 0 && u.runs[0].ID == r.ID {
			u.runs = u.runs[1:]
		}
		u.mu.Unlock()
		u.recorded.Add(1)
		log.Warn("run recorded late, after the store refused it", logService, r.Service, logRun, r.ID)
	}
}

// startRetrying runs the retry loop for the node's life; at Close (after
// every run has finished, before the bus closes) it makes a last attempt
// and reports what is lost.
func (n *Node) startRetrying() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.unrecorded.retry(ctx, n.save, n.log, n.bus.Health)
	}()
	n.undo = append(n.undo, func() error {
		n.unrecorded.flush(context.Background(), n.save, n.log, n.bus.Health)
		cancel()
		<-done
		return nil
	})
}

// reconcilePending records the runs that were written ahead of a state
// change when the node last stopped, and says what it found.
func (n *Node) reconcilePending(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	only := "" // a node alone: every run pending is its own
	if n.cfg.sharesStore() {
		only = n.cfg.Name // the others' are in flight there
	}
	found, err := n.store.ReconcilePending(ctx, only, func(ctx context.Context, r store.Run) error {
		_, err := n.planRun(ctx, r)
		return err
	})
	for _, r := range found {
		if r.Committed {
			n.log.Warn("recorded a run whose state committed just before the node stopped", logService, r.Run.Service, logRun, r.Run.ID, logOutcome, r.Run.Outcome)
		} else {
			n.log.Warn("recorded a run the node stopped in the middle of; its state change did not commit", logService, r.Run.Service, logRun, r.Run.ID)
		}
	}
	if err != nil {
		return fmt.Errorf("reconcile runs pending at the last stop: %w", err)
	}
	return nil
}

// reportRecovery logs what the store found at start, stream by stream, and
// every problem loudly.
func (n *Node) reportRecovery() {
	rep := n.store.Recovery()
	for _, s := range rep.Streams {
		n.log.Info("store opened", "stream", s.Stream, "kind", s.Kind, "records", s.Records, "first_seq", s.FirstSeq, "last_seq", s.LastSeq, "deleted", s.Deleted, "lost", s.Lost, "salvaged", s.Salvaged)
	}
	for _, p := range rep.Problems() {
		n.log.Warn("store damage", "problem", p)
	}
}

// Readiness implements server.Backend: Ready, with the store's report of
// what it found at start.
func (n *Node) Readiness() api.Readiness {
	rd := api.Readiness{Ready: true}
	if err := n.Ready(); err != nil {
		rd.Ready, rd.Reason = false, err.Error()
	}
	if n.store != nil {
		rep := n.store.Recovery()
		rd.Store, _ = json.Marshal(rep)
		rd.Problems = rep.Problems()
	}
	rd.Postgres = n.postgresReadiness()
	return rd
}
