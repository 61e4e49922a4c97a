package trigger

import (
	"fmt"
	"time"
)

// Catch-up policies: what the node does, when it starts or a service comes
// back, about the ticks of a cron trigger that fell due while nothing
// evaluated them (the node was down). The manifest spells them.
const (
	// CatchUpSkip records the missed ticks as one missed evaluation and
	// runs none of them. The default.
	CatchUpSkip = "skip"
	// CatchUpOnce runs once for the newest missed tick and records the
	// others as missed.
	CatchUpOnce = "once"
	// CatchUpAll runs the newest Limit missed ticks, oldest of them first,
	// and records the older ones as missed.
	CatchUpAll = "all"
)

// MaxCatchUpLimit bounds how many missed ticks CatchUpAll runs.
const MaxCatchUpLimit = 1000

// CatchUp is a trigger's catch-up policy.
type CatchUp struct {
	// Policy is CatchUpSkip, CatchUpOnce or CatchUpAll; "" is CatchUpSkip.
	Policy string
	// Limit is how many missed ticks CatchUpAll runs at most, 1 to
	// MaxCatchUpLimit. Ignored by the other policies.
	Limit int
}

// CatchUpPlan is what to do about the ticks of one trigger that fell due
// after the last tick evaluated and at or before now.
type CatchUpPlan struct {
	// Due counts every tick that fell due (at least; see Missed), First
	// and Last are the oldest and newest of them. Due is zero when none did.
	Due         int
	First, Last time.Time
	// Run are the ticks to run now, oldest first.
	Run []time.Time
	// Missed counts the due ticks not run: Due - len(Run); MissedLast is
	// the newest of them (zero when Missed is zero), the trigger time of
	// the record that says they were missed: a tick has one record.
	Missed     int
	MissedLast time.Time
	// Capped is set when the walk of a cron expression stopped counting at
	// 2^20 ticks: Due is then a lower bound.
	Capped bool
}

// PlanCatchUp computes what to do about the ticks of the cron trigger sp
// (triggers[i] of a service) after last (the scheduled time of the last
// tick that was evaluated) up to and including now, under policy. Cron
// expressions are read in loc (nil: UTC). An interval trigger without an
// Anchor counts its intervals from last; with one, from its anchor. A zero
// last, a spec of another kind, or a last not before now plans nothing. It
// is pure: the same arguments give the same plan.
func PlanCatchUp(sp Spec, policy CatchUp, loc *time.Location, last, now time.Time) (CatchUpPlan, error) {
	if sp.Kind != KindCron || last.IsZero() || !last.Before(now) {
		return CatchUpPlan{}, nil
	}
	keep := 0
	switch policy.Policy {
	case "", CatchUpSkip:
	case CatchUpOnce:
		keep = 1
	case CatchUpAll:
		if policy.Limit < 1 || policy.Limit > MaxCatchUpLimit {
			return CatchUpPlan{}, fmt.Errorf("catch_up_limit: %w: %d is not between 1 and %d", ErrInvalidSpec, policy.Limit, MaxCatchUpLimit)
		}
		keep = policy.Limit
	default:
		return CatchUpPlan{}, fmt.Errorf("catch_up: %w: %q is not skip, once or all", ErrInvalidSpec, policy.Policy)
	}
	if loc == nil {
		loc = time.UTC
	}
	s := &Scheduler{loc: loc}
	e, err := s.newEntry("", 0, sp, last)
	if err != nil {
		return CatchUpPlan{}, err
	}
	var p CatchUpPlan
	if e.every > 0 {
		if e.next.After(now) {
			return p, nil
		}
		n := int64(now.Sub(e.next)/e.every) + 1
		p.Due = int(n)
		p.First = e.next.In(loc)
		p.Last = e.next.Add(time.Duration(n-1) * e.every).In(loc)
		k := min(int64(keep), n)
		if n > k {
			p.MissedLast = e.next.Add(time.Duration(n-k-1) * e.every).In(loc)
		}
		for j := n - k; j < n; j++ {
			p.Run = append(p.Run, e.next.Add(time.Duration(j)*e.every).In(loc))
		}
	} else {
		// A ring of the newest keep ticks: the walk may be long, the
		// plan stays small.
		ring := make([]time.Time, 0, keep)
		head := 0 // the oldest tick in ring once it is full
		at := e.next
		for ; !at.IsZero() && !at.After(now); at = e.sched.Next(at) {
			if p.Due == maxCatchUp {
				p.Capped = true
				break
			}
			if p.Due == 0 {
				p.First = at.In(loc)
			}
			p.Last = at.In(loc)
			p.Due++
			switch {
			case keep == 0:
				p.MissedLast = at.In(loc)
			case len(ring) < keep:
				ring = append(ring, at)
			default:
				p.MissedLast = ring[head].In(loc) // out of the ring: missed
				ring[head] = at
				head = (head + 1) % keep
			}
		}
		for j := range ring {
			p.Run = append(p.Run, ring[(head+j)%len(ring)].In(loc))
		}
	}
	p.Missed = p.Due - len(p.Run)
	return p, nil
}
