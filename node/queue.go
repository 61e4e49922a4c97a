package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/metrics"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// AdmissionConfig bounds the admission queue: where a submission of a new
// service waits while the node is at capacity (policy.limits.services).
// Waiters go in the order of their origin's rank (preferred origins first,
// policy.Compiled.OriginRank), then in the order they came; each time a
// service is removed, the first waiter is admitted (its submission goes
// through admission again, under the policy then in force). An upgrade of
// an admitted service never waits, and nothing admitted is evicted.
type AdmissionConfig struct {
	// Queue is the most submissions that wait at once, 0 to 4096; one
	// more is answered 503 at once. 0: none waits, a new service over
	// capacity is answered 503 at once. Default 64.
	Queue int `json:"queue" yaml:"queue"`
	// Wait is the longest a submission waits, a duration from 0s to 10m;
	// then it is answered 503 (with Retry-After) saying how long it waited
	// and behind how many others, and nothing of it is stored. Default
	// 30s.
	Wait string `json:"wait" yaml:"wait"`
}

// Bounds of AdmissionConfig.
const (
	maxAdmissionQueue = 4096
	maxAdmissionWait  = 10 * time.Minute
)

// DefaultAdmissionConfig returns the documented defaults.
func DefaultAdmissionConfig() AdmissionConfig { return AdmissionConfig{Queue: 64, Wait: "30s"} }

// Validate reports a bad queue or wait with its key.
func (c AdmissionConfig) Validate() error {
	var errs []error
	if c.Queue < 0 || c.Queue > maxAdmissionQueue {
		errs = append(errs, fmt.Errorf("admission.queue: must be from 0 to %d", maxAdmissionQueue))
	}
	if _, err := c.wait(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c AdmissionConfig) wait() (time.Duration, error) {
	d, err := time.ParseDuration(c.Wait)
	if err != nil || d < 0 || d > maxAdmissionWait {
		return 0, fmt.Errorf("admission.wait: must be a duration from 0s to %s", maxAdmissionWait)
	}
	return d, nil
}

// admissionQueue holds the submissions waiting for capacity. Capacity is
// counted as the services registered plus the slots promised to waiters
// (granted) that have not yet come back to take them, so a submission
// that did not wait cannot take a slot freed for the first waiter. A grant
// is a promise, not a guarantee: the waiter's submission checks capacity
// again under submitMu and, finding none, waits again in its place.
// The zero value is an empty queue. Safe for concurrent use.
type admissionQueue struct {
	mu       sync.Mutex
	seq      uint64
	waiting  []*ticket // rank, then arrival order
	reserved int       // waiting tickets granted a slot
}

// ticket is one waiting submission.
type ticket struct {
	rank     int
	seq      uint64
	since    time.Time
	deadline time.Time
	granted  bool
	wake     chan struct{} // receives when granted
}

// atCapacity is what a submission attempt returns when the node has no
// room for a new service; queued catches it.
type atCapacity struct {
	services, promised, limit int
	rank                      int
}

func (e *atCapacity) Error() string { return "node at capacity: " + e.counts() }

// Unwrap makes an atCapacity that escapes queued (a caller of
// submitArchive that does not queue) a 503 all the same.
func (e *atCapacity) Unwrap() error { return server.ErrUnavailable }

func (e *atCapacity) counts() string {
	s := fmt.Sprintf("%d of %d services", e.services, e.limit)
	if e.promised > 0 {
		s += fmt.Sprintf(" (and %d promised to earlier waiters)", e.promised)
	}
	return s
}

type ticketKey struct{}

// checkCapacity is called, under submitMu, for a submission admission
// decided to run: nil when the node has room for it, or an *atCapacity
// for the caller to return. An upgrade of a registered service (name) has
// room always. services is the number of services registered now.
func (n *Node) checkCapacity(ctx context.Context, pol *policy.Compiled, name string, services int, origin policy.OriginClaim) error {
	limit := pol.Policy().Limits.Services
	if limit <= 0 {
		return nil
	}
	if _, err := n.store.Service(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	own, _ := ctx.Value(ticketKey{}).(*ticket)
	q := &n.admission
	q.mu.Lock()
	promised := q.reserved
	if own != nil && own.granted {
		promised-- // the slot promised to this submission
	}
	q.mu.Unlock()
	if services+promised < limit {
		return nil
	}
	return &atCapacity{services: services, promised: promised, limit: limit, rank: pol.OriginRank(origin)}
}

// queued makes a submission: it calls attempt under submitMu and, when
// the attempt finds the node at capacity, waits in the admission queue
// with submitMu released (other submissions and removals go on) and
// tries again when a slot is promised to it. A submission that finds the
// queue full, or waits admission.wait without a slot, is answered
// ErrUnavailable with the reason; nothing of it is stored.
func (n *Node) queued(ctx context.Context, o api.SubmitOptions, attempt func(ctx context.Context) (api.SubmitResult, error)) (api.SubmitResult, error) {
	q := &n.admission
	var t *ticket
	for {
		n.submitMu.Lock()
		res, err := attempt(context.WithValue(ctx, ticketKey{}, t))
		var away *placeAway
		if errors.As(err, &away) {
			// Placed on another node of the cluster: offered there with
			// submitMu released; when this node's turn comes it is
			// admitted here, as any submission.
			n.submitMu.Unlock()
			res, notes, local, err := n.placeRemote(ctx, away)
			if !local {
				if t != nil && q.leave(t) {
					n.kickAdmission(context.WithoutCancel(ctx))
				}
				return res, err
			}
			ctx = context.WithValue(ctx, placedHereKey{}, notes)
			continue
		}
		var full *atCapacity
		if !errors.As(err, &full) {
			// Under submitMu: the slot promised to t is the service's
			// now, or free again when the attempt failed or needed no
			// slot (an upgrade, or unchanged because the same service
			// was admitted meanwhile). kickAdmission counts from the
			// store, so calling it when the slot was used is harmless.
			freed := t != nil && q.leave(t)
			n.submitMu.Unlock()
			if freed {
				n.kickAdmission(context.WithoutCancel(ctx))
			}
			return res, err
		}
		// Joined under submitMu, so no removal slips between finding the
		// node full and waiting for a slot.
		var pos int
		t, pos, err = n.joinQueue(t, full)
		n.submitMu.Unlock()
		if err != nil {
			return api.SubmitResult{}, err
		}
		n.log.Info("submission waiting for capacity", "origin", o.Origin.String(), "rank", full.rank, "position", pos,
			"services", full.services, "limit", full.limit, "wait_left", time.Until(t.deadline).Round(time.Millisecond).String())
		if err := n.awaitSlot(ctx, t, full); err != nil {
			if q.leave(t) {
				n.kickAdmission(context.WithoutCancel(ctx))
			}
			return api.SubmitResult{}, err
		}
	}
}

// joinQueue puts a new waiter in its place, or takes back the slot
// promised to t, which found the node full again, leaving it in its place.
// It returns the waiter's position, 1 for the first.
func (n *Node) joinQueue(t *ticket, full *atCapacity) (*ticket, int, error) {
	q := &n.admission
	q.mu.Lock()
	defer q.mu.Unlock()
	if t != nil {
		if t.granted {
			t.granted = false
			q.reserved--
		}
		return t, slices.Index(q.waiting, t) + 1, nil
	}
	wait, _ := n.cfg.Admission.wait()
	if len(q.waiting) >= n.cfg.Admission.Queue {
		msg := fmt.Sprintf("node at capacity: %s; the admission queue is full (%d waiting)", full.counts(), len(q.waiting))
		if n.cfg.Admission.Queue == 0 {
			msg = fmt.Sprintf("node at capacity: %s; this node keeps no admission queue (admission.queue 0)", full.counts())
		}
		return nil, 0, &server.Error{Kind: server.ErrUnavailable, Msg: msg, RetryAfter: max(wait, time.Second)}
	}
	q.seq++
	now := time.Now()
	t = &ticket{rank: full.rank, seq: q.seq, since: now, deadline: now.Add(wait), wake: make(chan struct{}, 1)}
	i, _ := slices.BinarySearchFunc(q.waiting, t, func(a, b *ticket) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return int(a.seq) - int(b.seq)
	})
	q.waiting = slices.Insert(q.waiting, i, t)
	return t, i + 1, nil
}

// awaitSlot waits until t is promised a slot, its time is up, the request
// is cancelled or the node closes.
func (n *Node) awaitSlot(ctx context.Context, t *ticket, full *atCapacity) error {
	timer := time.NewTimer(time.Until(t.deadline))
	defer timer.Stop()
	select {
	case <-t.wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.ctx.Done():
		return &server.Error{Kind: server.ErrUnavailable, Msg: "node at capacity and shutting down: the submission was not admitted", RetryAfter: time.Second}
	case <-timer.C:
		q := &n.admission
		q.mu.Lock()
		ahead := slices.Index(q.waiting, t)
		now := *full
		now.promised = q.reserved
		q.mu.Unlock()
		// The counts as they are now, not as they were when it joined.
		if view, err := n.policyView(context.WithoutCancel(ctx)); err == nil {
			now.services = view.Services
		}
		now.limit = n.Policy().Policy().Limits.Services
		full = &now
		wait, _ := n.cfg.Admission.wait()
		return &server.Error{Kind: server.ErrUnavailable, RetryAfter: max(wait, time.Second),
			Msg: fmt.Sprintf("node at capacity: %s; waited %s in the admission queue behind %s", full.counts(), time.Since(t.since).Round(time.Millisecond), others(ahead))}
	}
}

func others(n int) string {
	if n == 1 {
		return "1 other"
	}
	return fmt.Sprintf("%d others", n)
}

// leave takes t out of the queue; it reports whether t held a promised
// slot, which is free again.
func (q *admissionQueue) leave(t *ticket) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.waiting, t)
	if i < 0 {
		return false
	}
	q.waiting = slices.Delete(q.waiting, i, i+1)
	if t.granted {
		t.granted = false
		q.reserved--
		return true
	}
	return false
}

// kickAdmission promises the free slots, if any, to the first waiters:
// called when a service was removed, a promised slot was given back, or
// the policy changed. With no limit, every waiter goes.
func (n *Node) kickAdmission(ctx context.Context) {
	q := &n.admission
	q.mu.Lock()
	idle := len(q.waiting) == q.reserved
	q.mu.Unlock()
	if idle {
		return
	}
	limit := n.Policy().Policy().Limits.Services
	services := 0
	if limit > 0 {
		count, _, err := n.regIndex.read(ctx, n.store)
		if err != nil {
			n.log.Warn("admission queue: count services", logErr, err)
			return
		}
		services = n.servicesCounted(count)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	free := len(q.waiting)
	if limit > 0 {
		free = limit - services - q.reserved
	}
	for _, t := range q.waiting {
		if free <= 0 {
			break
		}
		if t.granted {
			continue
		}
		t.granted = true
		q.reserved++
		free--
		t.wake <- struct{}{}
	}
}

// register adds the queue's gauge to the node's metrics.
func (q *admissionQueue) register(reg *metrics.Registry) {
	reg.NewGaugeFunc("andromeda_admission_queue", "Submissions of new services waiting for capacity (policy.limits.services) in the admission queue.", func() float64 {
		q.mu.Lock()
		defer q.mu.Unlock()
		return float64(len(q.waiting))
	})
}
