package node

import (
	"testing"
	"time"
)

// TestModuleRate: a module's last-minute count keeps the runs of the 60
// seconds before now and forgets older ones, also across a wrap of the
// ring; the totals keep everything.
func TestModuleRate(t *testing.T) {
	var r moduleRate
	t0 := time.Unix(1_000_000, 0)
	for range 3 {
		r.note(t0, false)
	}
	r.note(t0.Add(30*time.Second), true)
	r.note(t0.Add(30*time.Second), false)
	for _, tc := range []struct {
		at   time.Duration
		want uint64
	}{{0, 3}, {59 * time.Second, 5}, {60 * time.Second, 2}, {89 * time.Second, 2}, {90 * time.Second, 0}, {10 * time.Minute, 0}} {
		if got := r.lastMinute(t0.Add(tc.at)); got != tc.want {
			t.Errorf("last minute at +%v = %d, want %d", tc.at, got, tc.want)
		}
	}
	r.note(t0.Add(120*time.Second), false) // the bucket of t0, reused
	if got := r.lastMinute(t0.Add(120 * time.Second)); got != 1 {
		t.Errorf("after a wrap: %d, want 1", got)
	}
	if r.ran != 6 || r.failed != 1 {
		t.Errorf("ran %d, failed %d; want 6, 1", r.ran, r.failed)
	}
}
