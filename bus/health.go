package bus

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/internal/disk"
	"github.com/nats-io/nats-server/v2/server"
)

// How the embedded server behaves when a write fails (nats-server 2.15, one
// server, file storage; seen on a full tmpfs): the stream whose write failed
// keeps the error for good ("critical write error"), answers no publish
// (publishers time out) and refuses purges; JetStream itself stays enabled
// and other streams keep working until they too need space. Only reloading
// the stream clears the error. So the bus watches the server's own health
// report (which lists stream write errors and a disabled JetStream) and,
// once enough space is free, restarts JetStream in place: every stream and
// bucket is reloaded from disk with its data, the connection stays up, and
// the jetstream handles built on it keep working.

// Recovery backoff: a restart that does not hold (the store fails again
// within backoffReset) doubles the wait before the next, up to maxBackoff.
const (
	maxBackoff   = 2 * time.Minute
	backoffReset = time.Minute
)

// Health reports whether JetStream can store now: nil if it can, else an
// error wrapping ErrUnavailable that says why (a stream's write error,
// JetStream disabled, waiting for free space, not connected). For the
// embedded server the answer is kept by a watcher that checks every
// HealthInterval and at once after the server logs a write error, and that
// restarts JetStream when the error is cleared by free space; Health itself
// only reads it, so it is cheap enough for every request. For an external
// cluster it reports the connection only. Safe for concurrent use.
func (b *Bus) Health() error {
	if !b.health.embedded {
		if b.Conn == nil || !b.Conn.IsConnected() {
			return fmt.Errorf("bus: not connected to NATS: %w", ErrUnavailable)
		}
		return nil
	}
	return b.health.get()
}

// health is the embedded server's store health and its watcher.
type health struct {
	embedded bool
	nudge    chan struct{} // a write error was logged: check now
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu  sync.Mutex
	err error
}

func (h *health) init() {
	h.nudge = make(chan struct{}, 1)
	h.quit = make(chan struct{})
	h.done = make(chan struct{})
}

// start runs watch until stop.
func (h *health) start(watch func(quit <-chan struct{})) {
	h.embedded = true
	go func() {
		defer close(h.done)
		watch(h.quit)
	}()
}

// stop ends the watcher and waits for it. Safe to call more than once, and
// when it never started.
func (h *health) stop() {
	h.stopOnce.Do(func() {
		close(h.quit)
		if h.embedded {
			<-h.done
		}
	})
}

func (h *health) get() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// set records err and reports whether health changed between nil and
// non-nil.
func (h *health) set(err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := (h.err == nil) != (err == nil)
	h.err = err
	return changed
}

// serverError is told every error line of the embedded server; a write
// failure makes the watcher check at once rather than at its next tick.
func (b *Bus) serverError(msg string) {
	b.routes.note(msg)
	m := strings.ToLower(msg)
	for _, s := range []string{"write error", "no space left", "out of resources", "disabling jetstream", "will be disabled"} {
		if strings.Contains(m, s) {
			select {
			case b.health.nudge <- struct{}{}:
			default:
			}
			return
		}
	}
}

// recovery is the watcher's backoff state.
type recovery struct {
	backoff time.Duration // before the next restart; 0 when none failed
	next    time.Time     // no restart before this
	healthy time.Time     // since when the store is healthy; zero if not
}

func (b *Bus) watch(quit <-chan struct{}) {
	t := time.NewTicker(b.cfg.HealthInterval)
	defer t.Stop()
	var r recovery
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		case <-b.health.nudge:
		}
		b.check(&r, time.Now())
	}
}

// check updates the health and, when the store cannot write and enough
// space is free, restarts JetStream.
func (b *Bus) check(r *recovery, now time.Time) {
	problem := b.lastingProblem()
	if problem == "" {
		if b.health.set(nil) {
			b.log.Info("jetstream stores again")
		}
		if r.healthy.IsZero() {
			r.healthy = now
		} else if now.Sub(r.healthy) >= backoffReset {
			r.backoff = 0
		}
		return
	}
	r.healthy = time.Time{}
	if now.Before(r.next) {
		b.setUnhealthy(problem)
		return
	}
	if free, err := diskFree(b.cfg.Dir); err == nil && free < b.cfg.RecoverFree {
		b.setUnhealthy(fmt.Sprintf("%s; waiting for %s free on the data filesystem (%s free)", problem, disk.Size(b.cfg.RecoverFree), disk.Size(free)))
		return
	}
	b.setUnhealthy(problem)
	r.backoff = min(max(2*r.backoff, b.cfg.HealthInterval), maxBackoff)
	r.next = now.Add(r.backoff)
	b.log.Warn("restarting jetstream to clear its error", logErr, problem)
	start := time.Now()
	if err := b.restartJetStream(); err != nil {
		b.log.Error("restart jetstream", logErr, err)
		return
	}
	if problem := b.storeProblem(); problem != "" {
		b.log.Error("jetstream restarted but still cannot store", logErr, problem)
		b.setUnhealthy(problem)
		return
	}
	r.healthy = now
	b.health.set(nil)
	b.log.Info("jetstream restarted and stores again", "took", time.Since(start).Round(time.Millisecond))
}

func (b *Bus) setUnhealthy(problem string) {
	if b.health.set(fmt.Errorf("bus: %w: %s", ErrUnavailable, problem)) {
		b.log.Error("jetstream cannot store", logErr, problem)
	}
}

// How often, and how far apart, a problem must be seen before it counts.
const (
	problemLooks = 3
	problemGap   = 100 * time.Millisecond
)

// lastingProblem is storeProblem with what goes away by itself left out:
// only the problems seen in each of problemLooks looks problemGap apart.
// The server's health report walks the stream directories on disk, and a
// stream being created has its directory before it is registered, so for
// a moment it reads "could not be recovered"; restarting JetStream for
// that would drop every request in flight, the creation among them (seen
// as a node start timing out on a bucket it was creating).
func (b *Bus) lastingProblem() string {
	seen := b.storeProblem()
	for i := 1; i < problemLooks && seen != ""; i++ {
		time.Sleep(problemGap)
		now := map[string]bool{}
		for _, p := range strings.Split(b.storeProblem(), "; ") {
			now[p] = true
		}
		var kept []string
		for _, p := range strings.Split(seen, "; ") {
			if now[p] {
				kept = append(kept, p)
			}
		}
		seen = strings.Join(kept, "; ")
	}
	return seen
}

// storeProblem asks the embedded server for its health (JetStream enabled,
// no stream holding a write error) and returns what is wrong, or "". In a
// cluster the report also says what the cluster is going through (a
// stream's group electing a leader as a server goes, a replica catching
// up): those are the cluster's to heal, never a reason to restart this
// server's JetStream, which would disturb the cluster further, and are
// left out.
func (b *Bus) storeProblem() string {
	h := b.srv.Healthz(&server.HealthzOptions{Details: true})
	var msgs []string
	if h.Error != "" {
		msgs = append(msgs, h.Error)
	}
	for _, e := range h.Errors {
		msgs = append(msgs, e.Error)
	}
	if b.cfg.Cluster.Enabled() {
		msgs = slices.DeleteFunc(msgs, clusterTransient)
	}
	return strings.Join(msgs, "; ")
}

// clusterTransient reports whether a health problem is the cluster's state
// rather than this server's storage.
func clusterTransient(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"write error", "no space", "out of resources", "could not be recovered", "not enabled", "disabled"} {
		if strings.Contains(m, s) {
			return false
		}
	}
	return true
}

// restartJetStream shuts JetStream down, keeping its files, and enables it
// again, reloading every stream from disk. Requests in flight meanwhile
// fail (no responders) rather than wait.
func (b *Bus) restartJetStream() error {
	if b.srv.JetStreamEnabled() {
		if err := b.srv.ShutdownJetStream(); err != nil {
			return fmt.Errorf("bus: shut jetstream down: %w", err)
		}
	}
	cfg := b.jscfg
	if err := b.srv.EnableJetStream(&cfg); err != nil {
		return fmt.Errorf("bus: enable jetstream: %w", err)
	}
	return nil
}

// diskFree is the space available to an unprivileged writer on the
// filesystem holding dir.
func diskFree(dir string) (int64, error) {
	free, _, err := disk.Usage(dir)
	return free, err
}
