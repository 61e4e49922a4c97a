package health

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is where the tests' clocks start.
var t0 = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

func fixed(r float64) func() float64 { return func() float64 { return r } }

func TestBackoffNextDelay(t *testing.T) {
	noJitter := Backoff{Base: time.Second, Max: 5 * time.Minute}
	tests := []struct {
		name     string
		b        Backoff
		failures int
		want     time.Duration
	}{
		{"no failures", noJitter, 0, 0},
		{"negative", noJitter, -3, 0},
		{"first", noJitter, 1, time.Second},
		{"second", noJitter, 2, 2 * time.Second},
		{"third", noJitter, 3, 4 * time.Second},
		{"ninth", noJitter, 9, 256 * time.Second},
		{"capped", noJitter, 10, 5 * time.Minute},
		{"far past the cap", noJitter, 1000, 5 * time.Minute},
		{"zero value means 1s and 5m", Backoff{}, 1, time.Second},
		{"zero value cap", Backoff{}, 64, 5 * time.Minute},
		{"base above max", Backoff{Base: time.Hour, Max: time.Minute}, 1, time.Minute},
		{"huge max", Backoff{Base: time.Second, Max: 1<<63 - 1}, 200, 1<<63 - 1},
		{"jitter low draw", Backoff{Base: time.Second, Max: time.Minute, Jitter: 0.2, Rand: fixed(0)}, 3, 4 * time.Second},
		{"jitter mid draw", Backoff{Base: time.Second, Max: time.Minute, Jitter: 0.2, Rand: fixed(0.5)}, 3, 3600 * time.Millisecond},
		{"jitter high draw", Backoff{Base: time.Second, Max: time.Minute, Jitter: 0.2, Rand: fixed(1)}, 3, 3200 * time.Millisecond},
		{"jitter at the cap", Backoff{Base: time.Second, Max: time.Minute, Jitter: 0.2, Rand: fixed(0.5)}, 30, 54 * time.Second},
		{"jitter clamped", Backoff{Base: time.Second, Max: time.Minute, Jitter: 7, Rand: fixed(0.25)}, 1, 750 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.NextDelay(tt.failures); got != tt.want {
				t.Errorf("%+v.NextDelay(%d) = %v, want %v", tt.b, tt.failures, got, tt.want)
			}
		})
	}
}

func TestDefaultBackoffRange(t *testing.T) {
	b := DefaultBackoff()
	for failures := 1; failures <= 20; failures++ {
		ideal := min(time.Second<<(failures-1), 5*time.Minute)
		for range 50 {
			got := b.NextDelay(failures)
			if got > ideal || got < ideal*8/10 {
				t.Fatalf("DefaultBackoff().NextDelay(%d) = %v, want in [%v, %v]", failures, got, ideal*8/10, ideal)
			}
		}
	}
}

func TestHealth(t *testing.T) {
	h := New(Config{Backoff: Backoff{Base: time.Second, Max: 4 * time.Second}})
	now := t0
	check := func(step string, at time.Time, wantSkip bool, wantUntil time.Time) {
		t.Helper()
		skip, until := h.Skip(at)
		if skip != wantSkip || !until.Equal(wantUntil) {
			t.Errorf("%s: Skip(%v) = %v, %v; want %v, %v", step, at, skip, until, wantSkip, wantUntil)
		}
	}

	for i := 1; i <= 2; i++ {
		if h.Failure(now) {
			t.Errorf("Failure #%d reported unhealthy below the default threshold of 3", i)
		}
		check("below threshold", now, false, time.Time{})
	}
	if !h.Failure(now) {
		t.Error("third Failure reported healthy")
	}
	check("in backoff", now, true, now.Add(time.Second))
	check("in backoff, later", now.Add(999*time.Millisecond), true, now.Add(time.Second))
	if st := h.State(); st.Healthy || st.Failures != 3 || !st.SkipUntil.Equal(now.Add(time.Second)) {
		t.Errorf("State() = %+v, want unhealthy, 3 failures, skip until +1s", st)
	}

	// The backoff has passed: the next tick is a probe. It fails, so the
	// backoff doubles, then stops at Max.
	now = now.Add(time.Second)
	check("probe", now, false, time.Time{})
	h.Failure(now)
	check("second backoff", now, true, now.Add(2*time.Second))
	now = now.Add(2 * time.Second)
	h.Failure(now)
	check("third backoff", now, true, now.Add(4*time.Second))
	h.Failure(now)
	check("capped backoff", now, true, now.Add(4*time.Second))

	h.Success()
	check("after success", now, false, time.Time{})
	if st := h.State(); !st.Healthy || st.Failures != 0 || !st.SkipUntil.IsZero() {
		t.Errorf("State() after Success = %+v, want healthy with no failures", st)
	}
	if h.Failure(now) {
		t.Error("one Failure after Success reported unhealthy")
	}
}

func TestHealthThreshold(t *testing.T) {
	h := New(Config{Threshold: 1, Backoff: Backoff{Base: time.Minute, Jitter: 0.2, Rand: fixed(0)}})
	if !h.Failure(t0) {
		t.Error("Failure with threshold 1 reported healthy")
	}
	if skip, until := h.Skip(t0); !skip || !until.Equal(t0.Add(time.Minute)) {
		t.Errorf("Skip = %v, %v; want true, %v", skip, until, t0.Add(time.Minute))
	}
}

func TestHealthDefaults(t *testing.T) {
	h := New(Config{})
	if h.threshold != 3 || h.backoff.Base != time.Second || h.backoff.Max != 5*time.Minute || h.backoff.Jitter != 0.2 {
		t.Errorf("New(Config{}) = threshold %d, backoff %+v; want DefaultConfig()", h.threshold, h.backoff)
	}
	d := DefaultConfig()
	if b := d.Backoff; d.Threshold != 3 || b.Base != time.Second || b.Max != 5*time.Minute || b.Jitter != 0.2 || b.Rand != nil {
		t.Errorf("DefaultConfig() = %+v", d)
	}
}

// TestHealthConcurrent: Failure, Skip and State from many goroutines at
// once lose no failure and show no torn state. Every Failure is counted
// once; exactly the calls past the threshold report unhealthy; each
// snapshot a reader takes is one the serial sequence passes through (its
// backoff is the one its failure count gives, and neither goes back). Once
// every goroutine ends on a Success, the service is healthy. None of this
// needs -race to fail.
func TestHealthConcurrent(t *testing.T) {
	const writers, readers, per, threshold = 4, 2, 5000, 3
	// Without jitter the backoff is a function of the failure count, so a
	// reader can check a snapshot against it.
	b := Backoff{Base: time.Millisecond, Max: time.Hour}
	h := New(Config{Threshold: threshold, Backoff: b})
	delays := map[time.Duration]bool{}
	for k := 1; k <= writers*per; k++ {
		delays[b.NextDelay(k)] = true
	}

	var unhealthy atomic.Int64
	var writing, reading sync.WaitGroup
	done := make(chan struct{})
	for range readers {
		reading.Go(func() {
			var last State
			for {
				select {
				case <-done:
					return
				default:
				}
				st := h.State()
				want := State{Healthy: st.Failures < threshold, Failures: st.Failures}
				if !want.Healthy {
					want.SkipUntil = t0.Add(b.NextDelay(st.Failures - threshold + 1))
				}
				if st != want || st.Failures < last.Failures || st.SkipUntil.Before(last.SkipUntil) {
					t.Errorf("State() = %+v after %+v; want %+v, never going back", st, last, want)
					return
				}
				last = st
				skip, until := h.Skip(t0)
				if skip != !until.IsZero() || skip && !delays[until.Sub(t0)] || !skip && last.Failures >= threshold {
					t.Errorf("Skip(t0) = %v, %v after State() = %+v; want a backoff of %v after the threshold", skip, until, last, b)
					return
				}
			}
		})
	}
	for range writers {
		writing.Go(func() {
			for range per {
				if h.Failure(t0) {
					unhealthy.Add(1)
				}
			}
		})
	}
	writing.Wait()
	close(done)
	reading.Wait()
	const total = writers * per
	want := State{Failures: total, SkipUntil: t0.Add(b.NextDelay(total - threshold + 1))}
	if st := h.State(); st != want {
		t.Errorf("State() after %d concurrent Failures = %+v, want %+v", total, st, want)
	}
	if got := unhealthy.Load(); got != total-threshold+1 {
		t.Errorf("%d of %d concurrent Failures reported unhealthy, want %d (all past the threshold of %d)", got, total, total-threshold+1, threshold)
	}

	// Failure and Success alternate in every goroutine, each ending on a
	// Success: the last call of all is a Success, so the service is healthy.
	for range writers {
		writing.Go(func() {
			for i := range per {
				h.Failure(t0.Add(time.Duration(i) * time.Millisecond))
				h.Success()
			}
		})
	}
	writing.Wait()
	if st := h.State(); st != (State{Healthy: true}) {
		t.Errorf("State() after every goroutine ended on a Success = %+v, want healthy with no failures", st)
	}
	if skip, until := h.Skip(t0); skip || !until.IsZero() {
		t.Errorf("Skip(t0) after Success = %v, %v; want false, zero", skip, until)
	}
}
