package trigger

import (
	"sync"
	"testing"
	"time"
)

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
	h := NewHealth(HealthConfig{Backoff: Backoff{Base: time.Second, Max: 4 * time.Second}})
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
	h := NewHealth(HealthConfig{Threshold: 1, Backoff: Backoff{Base: time.Minute, Jitter: 0.2, Rand: fixed(0)}})
	if !h.Failure(t0) {
		t.Error("Failure with threshold 1 reported healthy")
	}
	if skip, until := h.Skip(t0); !skip || !until.Equal(t0.Add(time.Minute)) {
		t.Errorf("Skip = %v, %v; want true, %v", skip, until, t0.Add(time.Minute))
	}
}

func TestHealthDefaults(t *testing.T) {
	h := NewHealth(HealthConfig{})
	if h.threshold != 3 || h.backoff.Base != time.Second || h.backoff.Max != 5*time.Minute || h.backoff.Jitter != 0.2 {
		t.Errorf("NewHealth(HealthConfig{}) = threshold %d, backoff %+v; want DefaultHealthConfig()", h.threshold, h.backoff)
	}
	d := DefaultHealthConfig()
	if b := d.Backoff; d.Threshold != 3 || b.Base != time.Second || b.Max != 5*time.Minute || b.Jitter != 0.2 || b.Rand != nil {
		t.Errorf("DefaultHealthConfig() = %+v", d)
	}
}

// TestHealthConcurrent is for the race detector.
func TestHealthConcurrent(t *testing.T) {
	h := NewHealth(DefaultHealthConfig())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				switch (g + i) % 4 {
				case 0:
					h.Success()
				case 1, 2:
					h.Failure(now)
				default:
					h.Skip(now)
					h.State()
				}
			}
		})
	}
	wg.Wait()
}
