package crashtest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// TestClusterRollingUpgrade: three services ticking every second, one
// submitted to each of three nodes; each node in turn is drained (POST
// /v1/node/drain, what andromeda drain asks), stopped with SIGTERM once it
// holds nothing, and started again on its data dir, as a rolling upgrade
// does one node at a time. Every service keeps running throughout: no tick
// runs twice, and none goes more than rollGap without one.
func TestClusterRollingUpgrade(t *testing.T) {
	kc := startKillCluster(t, 2*time.Second)
	ctx := context.Background()
	names := []string{"beat-1", "beat-2", "beat-3"}
	for i, name := range names {
		res, err := kc.client(i).Submit(ctx, heartbeatService(t, kc.tmp, name))
		if err != nil || res.Service.Node != fmt.Sprintf("n%d", i+1) {
			t.Fatalf("submit %s to n%d: %+v, %v", name, i+1, res.Service, err)
		}
	}
	time.Sleep(3 * time.Second)
	began := time.Now()
	for i, n := range kc.nodes {
		c := kc.client(i)
		start := time.Now()
		if _, err := c.Drain(ctx); err != nil {
			t.Fatalf("drain n%d: %v", i+1, err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			ns, err := c.Nodes(ctx)
			if err == nil && slices.ContainsFunc(ns, func(x api.ClusterNode) bool { return x.Self && x.Services == 0 }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d still holds services 30 s after its drain: %+v, %v", i+1, ns, err)
			}
		}
		drained := time.Since(start)
		stopped := time.Now()
		if err := n.stop(30 * time.Second); err != nil {
			t.Fatalf("stop n%d: %v", i+1, err)
		}
		took, err := n.start()
		if err != nil {
			t.Fatalf("start n%d again: %v", i+1, err)
		}
		ns, err := c.Nodes(ctx)
		if k := slices.IndexFunc(ns, func(x api.ClusterNode) bool { return x.Self }); err != nil || k < 0 || !ns[k].Started.After(stopped) {
			t.Fatalf("n%d after its restart: %+v, %v; want a node started after %v", i+1, ns, err, stopped)
		}
		for j := range kc.nodes {
			kc.waitFor(kc.client(j), kc.up, 15*time.Second)
		}
		t.Logf("n%d drained in %v, stopped, started again in %v: %v in all", i+1, drained.Round(time.Millisecond), took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(3 * time.Second)
	ended := time.Now()

	c := kc.client(0)
	for _, name := range names {
		runs, err := c.Runs(ctx, name, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var at []time.Time
		seen := map[string]string{}
		for _, r := range runs {
			if r.Trigger.Kind != "cron" {
				continue
			}
			if other, ok := seen[r.Trigger.At]; ok {
				t.Errorf("%s: tick %s ran twice: on %s and on %s", name, r.Trigger.At, other, r.Node)
			}
			seen[r.Trigger.At] = r.Node
			if tick, err := time.Parse(time.RFC3339Nano, r.Trigger.At); err == nil && tick.After(began.Add(-2*time.Second)) {
				at = append(at, tick)
			}
		}
		slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
		var gap time.Duration
		for k := 1; k < len(at); k++ {
			gap = max(gap, at[k].Sub(at[k-1]))
		}
		if len(at) == 0 || ended.Sub(at[len(at)-1]) > rollGap {
			t.Errorf("%s: no tick in the last %v", name, rollGap)
		}
		t.Logf("%s: %d ticks over the upgrade, the longest gap %v", name, len(at), gap)
		if gap > rollGap {
			t.Errorf("%s went %v without a tick during the rolling upgrade, more than %v", name, gap, rollGap)
		}
	}
}

// rollGap bounds a service's time without a tick during a rolling upgrade.
const rollGap = 12 * time.Second
