package node

import (
	"sync"
	"time"
)

// rateWindow is how long the per-minute caps look back.
const rateWindow = time.Minute

// rates counts what one deployment did in the last minute, for
// capabilities.caps.runs_per_minute and actions_per_minute. It lives in
// memory: a restarted node, or a new version, starts with a fresh minute.
// Safe for concurrent use.
type rates struct {
	mu      sync.Mutex
	runs    []time.Time // starts of the runs in the window
	actions []stamp     // actions taken by runs judged in the window
}

type stamp struct {
	at time.Time
	n  int
}

// startRun counts a run starting now unless limit runs already started
// in the window; ok false means it may not start, and n is how many did.
func (r *rates) startRun(limit int) (ok bool, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.prune(now)
	if len(r.runs) >= limit {
		return false, len(r.runs)
	}
	r.runs = append(r.runs, now)
	return true, len(r.runs)
}

// takeActions takes n actions now unless that would make more than limit
// in the window; used is what the window held before. A taken stamp is
// handed back with giveBack when its run's actions will not take effect.
func (r *rates) takeActions(n, limit int) (s stamp, ok bool, used int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.prune(now)
	for _, a := range r.actions {
		used += a.n
	}
	if used+n > limit {
		return stamp{}, false, used
	}
	s = stamp{now, n}
	r.actions = append(r.actions, s)
	return s, true, used
}

// giveBack returns what takeActions took for a run whose actions will not
// take effect (its state write conflicted and it runs again, or it
// failed).
func (r *rates) giveBack(s stamp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, a := range r.actions {
		if a == s {
			r.actions = append(r.actions[:i], r.actions[i+1:]...)
			return
		}
	}
}

func (r *rates) prune(now time.Time) {
	cut := now.Add(-rateWindow)
	i := 0
	for i < len(r.runs) && !r.runs[i].After(cut) {
		i++
	}
	r.runs = r.runs[i:]
	j := 0
	for j < len(r.actions) && !r.actions[j].at.After(cut) {
		j++
	}
	r.actions = r.actions[j:]
}
