// Package health decides when a failing service is skipped: a Tracker
// counts a service's consecutive failures and, past a threshold, backs off
// its scheduled runs with a Backoff (exponential, capped, with jitter),
// letting one run through as a probe after each backoff (docs/design.md
// section 7). The node keeps one Tracker per deployed service and reports
// its State in the API and the metrics. It imports the standard library
// only.
package health

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff computes exponential delays with jitter: Base after the first
// failure, doubling with each further one, never more than Max, minus a
// random fraction of up to Jitter. A Backoff is a value; it is safe for
// concurrent use if its Rand is.
type Backoff struct {
	// Base is the delay after one failure. Zero means 1s.
	Base time.Duration
	// Max caps the delay. Zero means 5m.
	Max time.Duration
	// Jitter is the largest fraction of the delay taken off at random: the
	// delay is uniform in [d×(1−Jitter), d], so Max stays a true ceiling and
	// services that failed together do not retry together. Zero means none;
	// DefaultBackoff uses 0.2. Clamped to [0, 1].
	Jitter float64
	// Rand returns a number in [0, 1). Nil means math/rand/v2.Float64.
	// Tests inject a fixed source.
	Rand func() float64
}

// DefaultBackoff returns the defaults: base 1s, max 5m, jitter 20%.
func DefaultBackoff() Backoff {
	return Backoff{Base: time.Second, Max: 5 * time.Minute, Jitter: 0.2}
}

// NextDelay returns the delay after the given number of consecutive
// failures: 0 for none, then about Base, 2×Base, 4×Base, … up to Max.
func (b Backoff) NextDelay(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	base, ceiling := b.Base, b.Max
	if base <= 0 {
		base = time.Second
	}
	if ceiling <= 0 {
		ceiling = 5 * time.Minute
	}
	d := base
	for i := 1; i < failures && d < ceiling; i++ {
		if d > ceiling/2 {
			d = ceiling
			break
		}
		d *= 2
	}
	d = min(d, ceiling)
	if j := min(max(b.Jitter, 0), 1); j > 0 {
		r := rand.Float64
		if b.Rand != nil {
			r = b.Rand
		}
		d -= time.Duration(float64(d) * j * r())
	}
	return d
}

// Config configures a Tracker.
type Config struct {
	// Threshold is the number of consecutive failures that make a service
	// unhealthy. Zero means 3.
	Threshold int
	// Backoff spaces the ticks an unhealthy service gets: after the k-th
	// failure past the threshold, ticks are skipped for Backoff.NextDelay(k).
	// The zero Backoff means DefaultBackoff().
	Backoff Backoff
}

// DefaultConfig returns the defaults: unhealthy after 3 consecutive
// failures, DefaultBackoff between probes.
func DefaultConfig() Config {
	return Config{Threshold: 3, Backoff: DefaultBackoff()}
}

// Tracker tracks the consecutive failures of one service and the backoff that
// follows (docs/design.md section 7): after Threshold consecutive failures the
// service is unhealthy and Skip tells the node to skip its ticks until the
// backoff has passed; the next tick after that runs as a probe, and each
// further failure doubles the backoff, up to its Max. The first success makes
// the service healthy again. Safe for concurrent use.
type Tracker struct {
	threshold int
	backoff   Backoff

	mu       sync.Mutex
	failures int       // consecutive
	until    time.Time // skip ticks before this; zero when healthy
}

// New returns the Tracker of a service that has not failed yet. Zero
// fields of cfg take their defaults.
func New(cfg Config) *Tracker {
	if cfg.Threshold <= 0 {
		cfg.Threshold = 3
	}
	b := cfg.Backoff
	if b.Base == 0 && b.Max == 0 && b.Jitter == 0 && b.Rand == nil {
		cfg.Backoff = DefaultBackoff()
	}
	return &Tracker{threshold: cfg.Threshold, backoff: cfg.Backoff}
}

// Success records a successful run: the failures are forgotten and the
// service is healthy.
func (h *Tracker) Success() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures = 0
	h.until = time.Time{}
}

// Failure records a failed run that ended at now and reports whether the
// service is unhealthy, which starts or lengthens its backoff.
func (h *Tracker) Failure(now time.Time) (unhealthy bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures++
	if h.failures < h.threshold {
		return false
	}
	h.until = now.Add(h.backoff.NextDelay(h.failures - h.threshold + 1))
	return true
}

// Skip reports whether a tick at now should be skipped because the service
// is unhealthy and in backoff, and until when ticks are skipped; the node
// records the skipped tick with that as its reason. An unhealthy service
// whose backoff has passed is not skipped: that tick is its probe.
func (h *Tracker) Skip(now time.Time) (skip bool, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failures < h.threshold || !now.Before(h.until) {
		return false, time.Time{}
	}
	return true, h.until
}

// State is a snapshot of a Tracker, for the API, metrics and dashboard.
type State struct {
	Healthy bool
	// Failures is the number of consecutive failures.
	Failures int
	// SkipUntil is the end of the current backoff; zero when healthy.
	SkipUntil time.Time
}

// State returns a snapshot of h.
func (h *Tracker) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := State{Healthy: h.failures < h.threshold, Failures: h.failures}
	if !st.Healthy {
		st.SkipUntil = h.until
	}
	return st
}
