package node_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// heartbeatEvery is the heartbeat example firing every second, with the
// given catch-up fields on its cron trigger.
func heartbeatEvery(t *testing.T, catchUp string) string {
	t.Helper()
	dir := example(t, "heartbeat")
	m, err := os.ReadFile(filepath.Join(dir, "andromeda.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m = bytes.Replace(m, []byte(`schedule: "*/15 * * * * *"`), []byte(`every: 1s`+catchUp), 1)
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitRunsUntil polls the runs of service until ok says they are what is
// expected, failing after 20 s with the last ones read.
func waitRunsUntil(t *testing.T, c *api.Client, service string, ok func([]api.Run) bool) []api.Run {
	t.Helper()
	var runs []api.Run
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		runs, _ = c.Runs(context.Background(), service, 200)
		if ok(runs) {
			return runs
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range runs {
		t.Logf("run %s %s at %s start %s: %s%s", r.ID, r.Outcome, r.Trigger.At, r.Start.Format(time.RFC3339Nano), r.Noop, r.Error)
	}
	t.Fatalf("runs of %s not as expected within 20s", service)
	return nil
}

// TestCatchUpAfterRestart stops a node running a 1 s cron service, waits
// about 3 s, starts it again on the same data dir, and checks what each
// catch_up policy made of the ticks missed meanwhile.
func TestCatchUpAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name, fields string
		// check gets the runs of the cron trigger recorded after the
		// restart, newest first, the tick of the last run before the
		// stop and when the restarted node was ready.
		check func(t *testing.T, after []api.Run, last, ready time.Time)
	}{
		{"skip", ``, func(t *testing.T, after []api.Run, last, ready time.Time) {
			missed := missedRecords(after)
			if len(missed) != 1 {
				t.Fatalf("%d missed records, want 1", len(missed))
			}
			// Every tick from the one after the last run to the
			// restart: 3 s down, and the start itself.
			if n := missedCount(t, missed[0]); !dueBetween(n, last, ready) {
				t.Errorf("missed %d ticks from %s to %s: %q", n, last, ready, missed[0].Noop)
			}
			if !strings.Contains(missed[0].Noop, "(catch_up: skip)") {
				t.Errorf("reason %q does not name the policy", missed[0].Noop)
			}
			if late := lateRuns(after, last); len(late) != 0 {
				t.Errorf("catch_up skip ran %d missed ticks", len(late))
			}
		}},
		{"once", `, catch_up: once`, func(t *testing.T, after []api.Run, last, ready time.Time) {
			late := lateRuns(after, last)
			if len(late) != 1 {
				t.Fatalf("catch_up once ran %d missed ticks, want 1", len(late))
			}
			missed := missedRecords(after)
			if len(missed) != 1 || !strings.Contains(missed[0].Noop, "catch_up: once") {
				t.Fatalf("missed records %+v, want one naming catch_up once", missed)
			}
			// The run is for the newest due tick; the record is at the
			// newest of the others, the tick before it: one record a
			// tick.
			if got, want := tickAt(t, missed[0]), tickAt(t, late[0]).Add(-time.Second); !got.Equal(want) {
				t.Errorf("missed record at %s, want the tick before the one run (%s)", got, want)
			}
		}},
		{"all", `, catch_up: all, catch_up_limit: 100`, func(t *testing.T, after []api.Run, last, ready time.Time) {
			late := lateRuns(after, last)
			if !dueBetween(len(late), last, ready) {
				t.Fatalf("catch_up all ran %d missed ticks from %s to %s", len(late), last, ready)
			}
			if missed := missedRecords(after); len(missed) != 0 {
				t.Errorf("catch_up all within its limit recorded missed ticks: %q", missed[0].Noop)
			}
			// One second apart, run oldest first (newest first here).
			for i := 1; i < len(late); i++ {
				a, b := tickAt(t, late[i]), tickAt(t, late[i-1])
				if b.Sub(a) != time.Second || late[i].Start.After(late[i-1].Start) {
					t.Errorf("ticks %s then %s: not consecutive in order", a, b)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each on a node of its own; the waits are the clock's
			ctx := context.Background()
			data := t.TempDir()
			n := startNode(t, func(c *node.Config) { c.Data = data })
			if _, err := n.op.Submit(ctx, pack(t, heartbeatEvery(t, tc.fields))); err != nil {
				t.Fatal(err)
			}
			waitRunsUntil(t, n.op, "heartbeat", func(rs []api.Run) bool { return len(rs) >= 2 })
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second) // the downtime whose ticks are missed
			restarting := time.Now()
			n2 := startNode(t, func(c *node.Config) { c.Data = data })
			ready := time.Now()
			var after []api.Run
			var last time.Time
			waitRunsUntil(t, n2.op, "heartbeat", func(rs []api.Run) bool {
				after, last = after[:0], time.Time{}
				for _, r := range rs {
					switch {
					case r.Trigger.Name != "triggers[0]":
					case !r.Start.Before(restarting):
						after = append(after, r)
					case last.IsZero():
						last = tickAt(t, r) // newest first: the last run before the stop
					}
				}
				// Settled once a tick scheduled after the restart ran.
				for _, r := range after {
					if at := tickAt(t, r); at.After(ready) && r.Outcome != "skipped" {
						return true
					}
				}
				return false
			})
			for _, r := range after {
				t.Logf("run %s %s at %s start %s: %s%s", r.ID, r.Outcome, r.Trigger.At, r.Start.Format(time.RFC3339Nano), r.Noop, r.Error)
			}
			t.Logf("last tick before the stop %s, ready %s", last.Format(time.RFC3339Nano), ready.Format(time.RFC3339Nano))
			tc.check(t, after, last, ready)
			seen := map[string]string{}
			for _, r := range after {
				if other, ok := seen[r.Trigger.At]; ok {
					t.Errorf("tick %s has two records: %s and %s", r.Trigger.At, other, r.ID)
				}
				seen[r.Trigger.At] = r.ID
			}
		})
	}
}

// dueBetween reports whether n is how many ticks of a 1 s interval fell
// due after last and before the restarted node scheduled its triggers,
// some time before it was ready: the downtime is 3 s, so at least 3.
func dueBetween(n int, last, ready time.Time) bool {
	most := int(ready.Sub(last) / time.Second)
	return n >= 3 && n >= most-1 && n <= most
}

// missedRecords are the missed-ticks records among runs.
func missedRecords(runs []api.Run) []api.Run {
	var out []api.Run
	for _, r := range runs {
		if r.Outcome == "skipped" && strings.HasPrefix(r.Noop, "missed ") {
			out = append(out, r)
		}
	}
	return out
}

// lateRuns are the runs of ticks on the grid of the last tick before the
// stop: the missed ticks that catch-up ran. The restarted node's own
// ticks count from when it scheduled the trigger, off that grid.
func lateRuns(runs []api.Run, last time.Time) []api.Run {
	var out []api.Run
	for _, r := range runs {
		at, err := time.Parse(time.RFC3339Nano, r.Trigger.At)
		if err == nil && at.After(last) && at.Sub(last)%time.Second == 0 && r.Outcome != "skipped" {
			out = append(out, r)
		}
	}
	return out
}

// missedCount reads N back from "missed N of M ticks ...".
func missedCount(t *testing.T, r api.Run) int {
	t.Helper()
	var n, m int
	if _, err := fmt.Sscanf(r.Noop, "missed %d of %d ticks", &n, &m); err != nil {
		t.Fatalf("reason %q: %v", r.Noop, err)
	}
	return n
}

func tickAt(t *testing.T, r api.Run) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, r.Trigger.At)
	if err != nil {
		t.Fatalf("run %s trigger at %q: %v", r.ID, r.Trigger.At, err)
	}
	return at
}

// TestCatchUpAfterUnhealthy: with catch_up all, the ticks skipped while a
// service was unhealthy run once it is healthy again, each for its own
// tick; with the default (skip) they stay skipped.
func TestCatchUpAfterUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		name, fields string
		catchUp      bool
	}{
		{"all", `, catch_up: all`, true},
		{"skip", ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each on a node of its own; the waits are the clock's
			ctx := context.Background()
			drv := realWasm(t)
			n := startNodeWith(t, drv)
			var failing atomic.Bool
			failing.Store(true)
			drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
				if failing.Load() {
					return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "failing on purpose"}, nil
				}
				return invoke()
			})
			if _, err := n.op.Submit(ctx, pack(t, heartbeatEvery(t, tc.fields))); err != nil {
				t.Fatal(err)
			}
			unhealthy := func(r api.Run) bool {
				return r.Outcome == "skipped" && strings.Contains(r.Noop, "unhealthy")
			}
			waitRunsUntil(t, n.op, "heartbeat", func(rs []api.Run) bool {
				k := 0
				for _, r := range rs {
					if unhealthy(r) {
						k++
					}
				}
				return k >= 2
			})
			failing.Store(false)
			// Healthy again once a probe succeeded; then, with catch-up,
			// every skipped tick has a run of its own.
			var skipped []api.Run
			ranAt := map[string]bool{}
			waitRunsUntil(t, n.op, "heartbeat", func(rs []api.Run) bool {
				skipped, ranAt = skipped[:0], map[string]bool{}
				healthy := false
				for _, r := range rs {
					switch {
					case unhealthy(r):
						skipped = append(skipped, r)
					case r.Outcome == "ok" || r.Outcome == "noop":
						ranAt[r.Trigger.At] = true
						healthy = true
					}
				}
				if !healthy {
					return false
				}
				if !tc.catchUp {
					return len(ranAt) >= 3 // a few ticks after recovery
				}
				for _, s := range skipped {
					if !ranAt[s.Trigger.At] {
						return false
					}
				}
				return true
			})
			if !tc.catchUp {
				for _, s := range skipped {
					if ranAt[s.Trigger.At] {
						t.Errorf("tick %s skipped while unhealthy ran with catch_up skip", s.Trigger.At)
					}
				}
			}
		})
	}
}
