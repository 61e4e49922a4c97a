package node

import (
	"context"
	"time"
)

// Shutdown is what a node's stop found: how many runs were in flight
// when it began, how many of them ended within the grace, how many it
// cancelled after it (each recorded as cancelled, by "node shutdown"),
// and how long the stop took.
type Shutdown struct {
	InFlight  int
	Finished  int
	Cancelled int
	Grace     time.Duration
	Took      time.Duration
}

// shutdownBy is who a run cancelled at the node's stop was cancelled by.
const shutdownBy = "node shutdown"

// quiesce is the first step of a stop: no new run starts (the triggers
// stop at once, fires and deliveries are refused as unavailable), the
// runs in flight get the config's lifecycle.stop_grace to end, and those
// still running after it are cancelled and waited for, so that each is
// recorded (cancelled) before the deployments and the store close.
func (n *Node) quiesce() {
	start := time.Now()
	n.stopping.Store(true)
	if n.sched != nil {
		// Ticks stop now; the calls in flight are runs, waited for below.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n.sched.Stop(ctx)
	}
	grace := n.stopGrace()
	sum := Shutdown{Grace: grace, InFlight: len(n.inflight.list(func(*flight) bool { return true }))}
	done := make(chan struct{})
	go func() { n.runs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		left := n.inflight.list(func(*flight) bool { return true })
		sum.Cancelled = len(left)
		if len(left) > 0 {
			n.log.Warn("runs still in flight after the stop's grace: cancelling them", "runs", len(left), "grace", grace)
		}
		for _, fl := range left {
			fl.cancel(shutdownBy)
		}
		select {
		case <-done:
		case <-time.After(cancelWait):
			n.log.Warn("runs cancelled at the stop did not end; their deployments stop now")
		}
	}
	sum.Finished = max(0, sum.InFlight-sum.Cancelled)
	sum.Took = time.Since(start)
	n.mu.Lock()
	n.shutdown = sum
	n.mu.Unlock()
}

// Stopped reports what the node's stop found; it is the zero Shutdown
// until Close returned.
func (n *Node) Stopped() Shutdown {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.shutdown
}
