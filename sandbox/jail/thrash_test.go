package jail

import (
	"strings"
	"testing"
	"time"
)

// TestThrashDetector feeds the detector samples 100 ms apart and checks
// when it reports a thrash.
func TestThrashDetector(t *testing.T) {
	const limit = 64 << 20
	full := limit - headroom(limit) // anonymous memory just filling the limit
	type step struct {
		anon, faultsPerTick int64
	}
	repeat := func(n int, s step) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	cat := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		limit int64
		steps []step
		at    int // index of the sample that reports; -1: none
	}{
		// The first sample is a baseline; ten more make one second. After a
		// break at sample 8, the streak starts there again.
		{"thrash", limit, repeat(20, step{full, 50}), 10},
		{"at the limit", limit, repeat(20, step{limit, 1000}), 10},
		{"below the headroom", limit, repeat(40, step{full - 1, 1000}), -1},
		{"few faults", limit, repeat(40, step{limit, 9}), -1},
		{"a break starts over", limit, cat(repeat(8, step{full, 50}), repeat(1, step{full, 0}), repeat(20, step{full, 50})), 18},
		{"memory freed starts over", limit, cat(repeat(8, step{full, 50}), repeat(1, step{0, 50}), repeat(20, step{full, 50})), 18},
		{"no limit", 0, repeat(40, step{limit, 1000}), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := thrashDetector{window: time.Second}
			now := time.Unix(1000, 0)
			var faults int64
			got := -1
			var reason string
			for i, s := range tc.steps {
				faults += s.faultsPerTick
				if r, ok := d.observe(now, memSample{limit: tc.limit, anon: s.anon, faults: faults}); ok && got < 0 {
					got, reason = i, r
				}
				now = now.Add(100 * time.Millisecond)
			}
			if got != tc.at {
				t.Fatalf("reported at sample %d (%q), want %d", got, reason, tc.at)
			}
			if got >= 0 && !strings.HasPrefix(reason, "thrashing at its memory limit: ") || got >= 0 && !strings.Contains(reason, " major page faults in 1s") {
				t.Errorf("reason %q", reason)
			}
		})
	}
}

// TestThrashDetectorUnreadFaults: a sample whose stat file was not read
// (usage below the headroom: faults -1) never starts a streak, so that the
// faults counted since the start are not taken for a burst.
func TestThrashDetectorUnreadFaults(t *testing.T) {
	const limit = 64 << 20
	d := thrashDetector{window: 200 * time.Millisecond}
	now := time.Unix(1000, 0)
	if _, ok := d.observe(now, memSample{limit: limit, faults: -1}); ok {
		t.Fatal("reported on the first sample")
	}
	now = now.Add(100 * time.Millisecond)
	if _, ok := d.observe(now, memSample{limit: limit, anon: limit, faults: 1 << 20}); ok {
		t.Fatal("reported a thrash from faults counted before the watch read them")
	}
	now = now.Add(100 * time.Millisecond)
	if _, ok := d.observe(now, memSample{limit: limit, anon: limit, faults: 1<<20 + 100}); ok {
		t.Fatal("reported before the window")
	}
	now = now.Add(100 * time.Millisecond)
	if r, ok := d.observe(now, memSample{limit: limit, anon: limit, faults: 1<<20 + 200}); !ok || !strings.Contains(r, "200 major page faults") {
		t.Fatalf("observe = %q, %v, want a thrash of 200 faults", r, ok)
	}
}
