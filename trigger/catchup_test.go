package trigger

import (
	"errors"
	"testing"
	"time"
)

func TestPlanCatchUp(t *testing.T) {
	last := t0 // 12:00:00
	ts := func(secs ...int) []time.Time {
		var out []time.Time
		for _, s := range secs {
			out = append(out, t0.Add(time.Duration(s)*time.Second))
		}
		return out
	}
	every := Spec{Kind: KindCron, Every: time.Second}
	expr := Spec{Kind: KindCron, Schedule: "*/2 * * * * *"}
	tests := []struct {
		name   string
		sp     Spec
		policy CatchUp
		last   time.Time
		now    time.Time
		due    int
		first  time.Time
		lastAt time.Time
		run    []time.Time
		// missed is the newest tick not run (the missed record's
		// trigger time); nil: none.
		missed []time.Time
	}{
		{"interval skip", every, CatchUp{}, last, t0.Add(3500 * time.Millisecond), 3, ts(1)[0], ts(3)[0], nil, ts(3)},
		{"interval once", every, CatchUp{Policy: CatchUpOnce}, last, t0.Add(3 * time.Second), 3, ts(1)[0], ts(3)[0], ts(3), ts(2)},
		{"interval all within limit", every, CatchUp{Policy: CatchUpAll, Limit: 10}, last, t0.Add(3 * time.Second), 3, ts(1)[0], ts(3)[0], ts(1, 2, 3), nil},
		{"interval all over limit keeps the newest", every, CatchUp{Policy: CatchUpAll, Limit: 2}, last, t0.Add(5 * time.Second), 5, ts(1)[0], ts(5)[0], ts(4, 5), ts(3)},
		{"interval nothing due", every, CatchUp{Policy: CatchUpOnce}, last, t0.Add(999 * time.Millisecond), 0, time.Time{}, time.Time{}, nil, nil},
		{"anchored interval counts from the anchor", Spec{Kind: KindCron, Every: 10 * time.Second, Anchor: t0.Add(-5 * time.Second)}, CatchUp{Policy: CatchUpAll, Limit: 5}, last, t0.Add(30 * time.Second), 3, ts(5)[0], ts(25)[0], ts(5, 15, 25), nil},
		{"expression skip", expr, CatchUp{Policy: CatchUpSkip}, last, t0.Add(9 * time.Second), 4, ts(2)[0], ts(8)[0], nil, ts(8)},
		{"expression once", expr, CatchUp{Policy: CatchUpOnce}, last, t0.Add(9 * time.Second), 4, ts(2)[0], ts(8)[0], ts(8), ts(6)},
		{"expression all over limit keeps the newest in order", expr, CatchUp{Policy: CatchUpAll, Limit: 3}, last, t0.Add(11 * time.Second), 5, ts(2)[0], ts(10)[0], ts(6, 8, 10), ts(4)},
		{"zero last plans nothing", every, CatchUp{Policy: CatchUpAll, Limit: 3}, time.Time{}, t0.Add(time.Hour), 0, time.Time{}, time.Time{}, nil, nil},
		{"last after now plans nothing", every, CatchUp{Policy: CatchUpOnce}, t0.Add(time.Hour), t0, 0, time.Time{}, time.Time{}, nil, nil},
		{"not cron", Spec{Kind: KindEvent, Topic: "a.b"}, CatchUp{Policy: CatchUpOnce}, last, t0.Add(time.Hour), 0, time.Time{}, time.Time{}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanCatchUp(tc.sp, tc.policy, time.UTC, tc.last, tc.now)
			if err != nil {
				t.Fatalf("PlanCatchUp: %v", err)
			}
			if p.Due != tc.due || !p.First.Equal(tc.first) || !p.Last.Equal(tc.lastAt) {
				t.Errorf("due %d from %v to %v, want %d from %v to %v", p.Due, p.First, p.Last, tc.due, tc.first, tc.lastAt)
			}
			var missed time.Time
			if tc.missed != nil {
				missed = tc.missed[0]
			}
			if !p.MissedLast.Equal(missed) || (p.Missed == 0) != missed.IsZero() {
				t.Errorf("%d missed, the newest %v; want the newest %v", p.Missed, p.MissedLast, missed)
			}
			if len(p.Run) != len(tc.run) {
				t.Fatalf("run %v, want %v", p.Run, tc.run)
			}
			for i := range p.Run {
				if !p.Run[i].Equal(tc.run[i]) {
					t.Errorf("run %v, want %v", p.Run, tc.run)
					break
				}
			}
			if p.Missed != tc.due-len(tc.run) {
				t.Errorf("missed %d, want %d", p.Missed, tc.due-len(tc.run))
			}
		})
	}
}

func TestPlanCatchUpBounds(t *testing.T) {
	sp := Spec{Kind: KindCron, Every: time.Second}
	for _, limit := range []int{0, -1, MaxCatchUpLimit + 1} {
		if _, err := PlanCatchUp(sp, CatchUp{Policy: CatchUpAll, Limit: limit}, nil, t0, t0.Add(time.Minute)); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("limit %d: err = %v, want ErrInvalidSpec", limit, err)
		}
	}
	if _, err := PlanCatchUp(sp, CatchUp{Policy: "sometimes"}, nil, t0, t0.Add(time.Minute)); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("unknown policy: err = %v, want ErrInvalidSpec", err)
	}
	// A downtime of a year of a per-second interval is counted, not
	// walked; the plan holds only what runs.
	p, err := PlanCatchUp(sp, CatchUp{Policy: CatchUpAll, Limit: MaxCatchUpLimit}, nil, t0, t0.Add(365*24*time.Hour))
	if err != nil || len(p.Run) != MaxCatchUpLimit || p.Missed != p.Due-MaxCatchUpLimit {
		t.Errorf("year of seconds: %d to run, %d missed of %d, %v", len(p.Run), p.Missed, p.Due, err)
	}
	// A per-second expression over a long downtime stops counting at 2^20.
	p, err = PlanCatchUp(Spec{Kind: KindCron, Schedule: "* * * * * *"}, CatchUp{Policy: CatchUpOnce}, nil, t0, t0.Add(30*24*time.Hour))
	if err != nil || !p.Capped || p.Due != maxCatchUp || len(p.Run) != 1 {
		t.Errorf("month of seconds: capped %v, due %d, run %d, %v", p.Capped, p.Due, len(p.Run), err)
	}
}

// BenchmarkPlanCatchUp is the worst plan a node starts with: a
// per-second cron expression down long enough to walk 2^20 ticks.
func BenchmarkPlanCatchUp(b *testing.B) {
	sp := Spec{Kind: KindCron, Schedule: "* * * * * *"}
	for b.Loop() {
		if _, err := PlanCatchUp(sp, CatchUp{Policy: CatchUpAll, Limit: MaxCatchUpLimit}, nil, t0, t0.Add(30*24*time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
}
