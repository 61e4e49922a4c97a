package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/node"
)

// freeAddrs are k local addresses free a moment ago.
func freeAddrs(t testing.TB, k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = testutil.FreeAddr(t)
	}
	return out
}

// clusterDur is d as a config duration.
func clusterDur(t testing.TB, d time.Duration) manifest.Duration {
	t.Helper()
	m, err := manifest.ParseDuration(d.String())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// clusterConfig sets cfg up as node name of a cluster routed over routes,
// with a fast heartbeat (200 ms, lost after 1 s).
func clusterConfig(t testing.TB, cfg *node.Config, name, listen string, routes []string) {
	cfg.Name = name
	cfg.Cluster.Name = "test-cluster"
	cfg.Cluster.Listen = listen
	cfg.Cluster.Routes = routes
	cfg.Cluster.Heartbeat = clusterDur(t, 200*time.Millisecond)
	cfg.Cluster.LostAfter = clusterDur(t, time.Second)
}

// startCluster starts k nodes routed into one cluster, side by side: each
// start waits for the cluster's JetStream to have a leader, which needs a
// majority of them up.
func startCluster(t testing.TB, k int, mutate ...func(i int, cfg *node.Config)) []*testNode {
	t.Helper()
	routes := freeAddrs(t, k)
	nodes := make([]*testNode, k)
	var wg sync.WaitGroup
	errs := make(chan error, k)
	for i := range k {
		wg.Go(func() {
			n, err := startNodeErr(t, func(cfg *node.Config) {
				clusterConfig(t, cfg, "n"+string(rune('1'+i)), routes[i], routes)
				for _, f := range mutate {
					f(i, cfg)
				}
			})
			if err != nil {
				errs <- err
				return
			}
			nodes[i] = n
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return nodes
}

// nodesOf lists the registry as n sees it, by name.
func nodesOf(t testing.TB, n *testNode) map[string]api.ClusterNode {
	t.Helper()
	ns, err := n.op.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.ClusterNode{}
	for _, c := range ns {
		out[c.Name] = c
	}
	return out
}

// waitHealth waits until n sees node name with health want.
func waitHealth(t testing.TB, n *testNode, name, want string, within time.Duration) api.ClusterNode {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, ok := nodesOf(t, n)[name]
		if ok && c.Health == want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s as %s sees it after %v: %+v (found %v), want health %s", name, n.cfg.Name, within, c, ok, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterNodes starts three nodes routed into one cluster: each lists
// all three up in the node registry with its own name marked, its API
// address and its drivers; the buckets are replicated on three servers; a
// node that stops cleanly is listed as left at once.
func TestClusterNodes(t *testing.T) {
	nodes := startCluster(t, 3)
	// Each node's entry gets its API address once it listens: a node
	// that just started may see another's first entry for a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var wrong []string
		for _, n := range nodes {
			seen := nodesOf(t, n)
			if len(seen) != 3 {
				wrong = append(wrong, fmt.Sprintf("%s lists %d nodes, want 3: %+v", n.cfg.Name, len(seen), seen))
				continue
			}
			for _, m := range nodes {
				c := seen[m.cfg.Name]
				if c.Health != api.NodeUp || c.API != m.Addr() || c.Cluster != "test-cluster" || c.Route != m.cfg.Cluster.Listen || c.Self != (m == n) {
					wrong = append(wrong, fmt.Sprintf("%s sees %s as %+v", n.cfg.Name, m.cfg.Name, c))
				}
			}
		}
		if len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s:\n%s", strings.Join(wrong, "\n"))
		}
	}
	// Heartbeats go on: a beat younger than lost_after, after several.
	time.Sleep(600 * time.Millisecond)
	for _, c := range nodesOf(t, nodes[0]) {
		if c.BeatAgeMs > 1000 || !strings.Contains(strings.Join(c.Drivers, ","), "wasm") {
			t.Errorf("%s: beat %.0f ms ago, drivers %v", c.Name, c.BeatAgeMs, c.Drivers)
		}
	}
	info, err := node.Bus(nodes[1].Node).JS.Stream(context.Background(), "KV_"+bus.BucketNodes)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Errorf("registry replicas = %d, want 3", r)
	}
	if r := info.CachedInfo().Cluster; r == nil || len(r.Replicas)+1 != 3 {
		t.Errorf("registry cluster info = %+v, want a leader and 2 replicas", r)
	}
	// The cluster status: every stream of the store with 3 replicas, a
	// leader among the nodes and the two others.
	st, err := nodes[0].op.ClusterStatus(context.Background())
	if err != nil || st.Cluster != "test-cluster" || len(st.Nodes) != 3 || len(st.Streams) < 10 {
		t.Fatalf("cluster status = %+v, %v", st, err)
	}
	for _, s := range st.Streams {
		if s.Replicas != 3 || !strings.HasPrefix(s.Leader, "n") || len(s.Peers) != 2 || slices.ContainsFunc(s.Peers, func(p api.StreamMember) bool { return p.Name == s.Leader }) {
			t.Errorf("stream %s: %+v; want 3 replicas, a leader and the two other nodes", s.Name, s)
		}
	}

	nodes[2].Close()
	waitHealth(t, nodes[0], "n3", api.NodeLeft, time.Second)
}

// TestClusterNodeLost: a node whose heartbeats stop (its heartbeat cut
// here; killed in the process tests) is listed as lost once its last
// heartbeat is older than lost_after, and up again when they come back.
func TestClusterNodeLost(t *testing.T) {
	nodes := startCluster(t, 3)
	resume := node.PauseHeartbeat(nodes[2].Node)
	c := waitHealth(t, nodes[0], "n3", api.NodeLost, 3*time.Second)
	if c.BeatAgeMs < 1000 {
		t.Errorf("n3 lost with its last heartbeat %.0f ms ago, want at least lost_after (1000 ms)", c.BeatAgeMs)
	}
	resume()
	waitHealth(t, nodes[1], "n3", api.NodeUp, 2*time.Second)
}

// TestTickClaimFirstStored: a tick claimed twice (two creates both
// answered as created across a change of the claims stream's leader) is
// the first claim's on every node, read from any replica or from the
// leader: the stream's order is the same on each replica, and the node
// whose claim came second reads that it lost. A slow claim's second read,
// from the leader, fires the tick on the node that claimed it only.
func TestTickClaimFirstStored(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	key := "ghost.0.29000000.1740000000000"
	first, err := node.StoreTickClaim(ctx, nodes[1].Node, key, "n2")
	if err != nil {
		t.Fatal(err)
	}
	second, err := node.StoreTickClaim(ctx, nodes[0].Node, key, "n1")
	if err != nil || second <= first {
		t.Fatalf("second claim stored at %d (%v), want after %d", second, err, first)
	}
	for _, n := range nodes {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		who, seq, err := node.FirstTickClaim(rctx, n.Node, key)
		cancel()
		if err != nil || who != "n2" || seq != first {
			t.Errorf("%s reads the first claim as %q at %d (%v), want n2 at %d", n.cfg.Name, who, seq, err, first)
		}
		rctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		who, seq, err = node.LeaderFirstClaim(rctx, n.Node, key)
		cancel()
		if err != nil || who != "n2" || seq != first {
			t.Errorf("%s reads the leader's first claim as %q at %d (%v), want n2 at %d", n.cfg.Name, who, seq, err, first)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if who, seq, err := node.LeaderFirstClaim(rctx, nodes[0].Node, "ghost.0.29000000.1740000060000"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the leader's first claim of a tick no one claimed = %q at %d (%v), want %v", who, seq, err, jetstream.ErrMsgNotFound)
	}

	// A claim whose create was slow (here: every create) is read again
	// from the claims stream's leader before its tick fires; the node
	// that claimed first fires, once, and the others do not.
	t.Run("slow claim", func(t *testing.T) {
		at := time.Now().Truncate(time.Second).Add(-time.Hour)
		began := time.Now()
		if !node.ClaimTick(nodes[0].Node, "slow", at, true, 200*time.Millisecond) {
			t.Fatal("n1's slow claim of a tick no one claimed: not fired")
		}
		if took := time.Since(began); took < 200*time.Millisecond {
			t.Errorf("the slow claim took %v, want the settle's 200ms before its second read", took)
		}
		for _, n := range nodes[1:] {
			if node.ClaimTick(n.Node, "slow", at, true, 200*time.Millisecond) {
				t.Errorf("%s fired the tick n1 claimed", n.cfg.Name)
			}
		}
		if !node.ClaimTick(nodes[1].Node, "slow", at.Add(time.Second), false, 0) {
			t.Error("n2's claim of the next tick: not fired")
		}
	})
}

// TestAloneNodeLists: a node alone lists itself, and forgets the entries
// of other names it had (an earlier host name).
func TestAloneNodeLists(t *testing.T) {
	n := startNode(t, func(cfg *node.Config) { cfg.Name = "before" })
	data := n.cfg.Data
	n.Close()
	m := startNode(t, func(cfg *node.Config) { cfg.Name = "after"; cfg.Data = data })
	seen := nodesOf(t, m)
	if len(seen) != 1 || seen["after"].Health != api.NodeUp || !seen["after"].Self {
		t.Fatalf("a node alone lists %+v, want itself alone", seen)
	}
}

// tickRuns are the heartbeat service's cron runs as any node reads them,
// and the nodes that ran them.
func tickRuns(t *testing.T, c *api.Client) ([]api.Run, map[string]int) {
	t.Helper()
	// A listing is asked again while the runs stream elects its leader
	// (a node of the cluster just stopped).
	runs, err := c.Runs(context.Background(), "heartbeat", 500)
	for deadline := time.Now().Add(20 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		runs, err = c.Runs(context.Background(), "heartbeat", 500)
	}
	if err != nil {
		t.Fatal(err)
	}
	var ticks []api.Run
	by := map[string]int{}
	for _, r := range runs {
		if r.Trigger.Kind == "cron" {
			ticks = append(ticks, r)
			by[r.Node]++
		}
	}
	return ticks, by
}

// waitTicks waits until ok says the cron runs are what is expected.
func waitTicks(t *testing.T, c *api.Client, within time.Duration, what string, ok func(by map[string]int) bool) []api.Run {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		runs, by := tickRuns(t, c)
		if ok(by) {
			return runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: cron runs by node %v, want %s", within, by, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterFailover: a cron service submitted to n1 of three nodes is
// placed there and runs there alone (every node lists it on n1; a fire
// through another node is forwarded to n1 and runs there). n1's heartbeats stop: once
// it is declared lost another node takes the service over, and n1, still
// running, gives it up when it sees the placement move; every tick of the
// whole time ran once (each claimed in the cluster before it fires), and
// the service's state went on from where n1 left it. The new owner then
// stops cleanly, and the third node takes the service over from a node
// that left.
func TestClusterFailover(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t, 3)
	res, err := nodes[0].op.Submit(ctx, pack(t, heartbeatEvery(t, "")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Service.Node != "n1" {
		t.Errorf("submitted to n1: placed on %q", res.Service.Node)
	}
	waitTicks(t, nodes[1].op, 15*time.Second, "3 on n1 alone", func(by map[string]int) bool { return by["n1"] >= 3 && len(by) == 1 })
	for _, n := range nodes[1:] {
		svc, err := n.op.Service(ctx, "heartbeat")
		if err != nil || svc.Node != "n1" {
			t.Errorf("%s lists heartbeat on %q (%v), want n1", n.cfg.Name, svc.Node, err)
		}
	}
	// Lifecycle commands through other nodes are forwarded to n1 and
	// answered there: stop, config set, a deploy of a stopped service,
	// start; a conflict keeps its kind.
	if svc, err := nodes[1].op.Stop(ctx, "heartbeat", time.Second); err != nil || svc.Phase != api.PhaseStopped || svc.Node != "n1" {
		t.Errorf("stop through n2 = %+v, %v; want stopped on n1", svc, err)
	}
	if _, err := nodes[2].op.Stop(ctx, "heartbeat", time.Second); status(err) != 409 || !strings.Contains(err.Error(), "already stopped") {
		t.Errorf("stop again through n3 = %v; want 409 already stopped", err)
	}
	if c, err := nodes[2].op.SetConfig(ctx, "heartbeat", map[string]any{}); err != nil || c.Service != "heartbeat" {
		t.Errorf("config set through n3 = %+v, %v", c, err)
	}
	if r, err := nodes[2].op.Deploy(ctx, "heartbeat"); err != nil || r.Valid.Ok == nil || r.Service.Node != "n1" {
		t.Errorf("deploy through n3 = %+v, %v; want deployed on n1", r, err)
	}
	if svc, err := nodes[1].op.Start(ctx, "heartbeat"); err != nil || svc.Phase != api.PhaseStarted || svc.Node != "n1" {
		t.Errorf("start through n2 = %+v, %v; want started on n1", svc, err)
	}
	if svc, err := nodes[0].op.Service(ctx, "heartbeat"); err != nil || svc.Phase != api.PhaseStarted {
		t.Errorf("n1 lists heartbeat %+v, %v; want started", svc, err)
	}
	// A fire through another node runs it where it is placed.
	if run, err := nodes[2].op.Fire(ctx, "heartbeat", nil); err != nil || run.Node != "n1" || run.Trigger.Kind != "manual" {
		t.Errorf("a fire through n3 = %+v, %v; want run on n1", run, err)
	}
	clusterKill(t, nodes)

	resume := node.PauseHeartbeat(nodes[0].Node)
	defer resume()
	runs := waitTicks(t, nodes[1].op, 15*time.Second, "3 on n2 or n3 after n1 is lost", func(by map[string]int) bool { return by["n2"]+by["n3"] >= 3 })
	next := "n2"
	if _, by := tickRuns(t, nodes[1].op); by["n3"] > 0 {
		next = "n3"
	}
	checkTicksOnce(t, runs)
	svc, err := nodes[1].op.Service(ctx, "heartbeat")
	if err != nil || svc.Node != next {
		t.Errorf("after failover heartbeat is placed on %q (%v), want %s", svc.Node, err, next)
	}
	// n1 gave it up: it fires no more.
	_, before := tickRuns(t, nodes[1].op)
	time.Sleep(2 * time.Second)
	if _, after := tickRuns(t, nodes[1].op); after["n1"] != before["n1"] {
		t.Errorf("n1 went on firing after the service was taken over: %d then %d runs", before["n1"], after["n1"])
	}

	// The owner leaves: the node left takes it over.
	third := map[string]*testNode{"n2": nodes[2], "n3": nodes[1]}[next]
	map[string]*testNode{"n2": nodes[1], "n3": nodes[2]}[next].Close()
	runs = waitTicks(t, third.op, 15*time.Second, "3 on "+third.cfg.Name, func(by map[string]int) bool { return by[third.cfg.Name] >= 3 })
	checkTicksOnce(t, runs)
	_, by := tickRuns(t, third.op)
	t.Logf("cron runs by node: %v", by)
}

// TestClusterDrain: a node asked to drain says so in the registry, the
// other nodes take its service over (no run recorded lost: nothing was),
// it gives the service up and fires no more, and it takes nothing over
// itself; each tick still runs once.
func TestClusterDrain(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t, 3)
	if _, err := nodes[0].op.Submit(ctx, pack(t, heartbeatEvery(t, ""))); err != nil {
		t.Fatal(err)
	}
	waitTicks(t, nodes[1].op, 15*time.Second, "2 on n1", func(by map[string]int) bool { return by["n1"] >= 2 })
	d, err := nodes[0].op.Drain(ctx)
	if err != nil || d.Health != api.NodeDraining || d.DrainingSince == nil || d.Services != 1 {
		t.Fatalf("drain n1 = %+v, %v; want draining with 1 service", d, err)
	}
	if again, err := nodes[0].op.Drain(ctx); err != nil || !again.DrainingSince.Equal(*d.DrainingSince) {
		t.Errorf("drain again = %+v, %v; want the same drain", again, err)
	}
	var n1 api.ClusterNode
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ns, err := nodes[1].op.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n1 = ns[0]
		if n1.Health == api.NodeDraining && n1.Services == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 as n2 sees it 15 s after the drain: %+v", n1)
		}
	}
	svc, err := nodes[1].op.Service(ctx, "heartbeat")
	if err != nil || (svc.Node != "n2" && svc.Node != "n3") {
		t.Fatalf("after the drain heartbeat is placed on %q (%v), want n2 or n3", svc.Node, err)
	}
	runs := waitTicks(t, nodes[1].op, 15*time.Second, "2 on "+svc.Node, func(by map[string]int) bool { return by[svc.Node] >= 2 })
	checkTicksOnce(t, runs)
	for _, r := range runs {
		if r.Outcome == "lost" {
			t.Errorf("a run recorded lost in a drain: %+v", r)
		}
	}
	_, before := tickRuns(t, nodes[1].op)
	time.Sleep(2 * time.Second)
	if _, after := tickRuns(t, nodes[1].op); after["n1"] != before["n1"] {
		t.Errorf("n1 went on firing after it was drained: %d then %d runs", before["n1"], after["n1"])
	}
	// The draining node is no candidate: when the new holder goes, the
	// third node takes the service, never n1.
	other := map[string]*testNode{"n2": nodes[2], "n3": nodes[1]}[svc.Node]
	map[string]*testNode{"n2": nodes[1], "n3": nodes[2]}[svc.Node].Close()
	// (30 s: on a loaded machine a node whose heartbeats are stored late
	// takes nothing over until they are on time again.)
	waitTicks(t, other.op, 30*time.Second, "2 on "+other.cfg.Name, func(by map[string]int) bool { return by[other.cfg.Name] >= 2 })
	if svc, err := other.op.Service(ctx, "heartbeat"); err != nil || svc.Node != other.cfg.Name {
		t.Errorf("heartbeat placed on %q (%v), want %s", svc.Node, err, other.cfg.Name)
	}
}

// checkTicksOnce fails t when two cron runs have the same tick.
func checkTicksOnce(t *testing.T, runs []api.Run) {
	t.Helper()
	seen := map[string]string{}
	for _, r := range runs {
		if other, ok := seen[r.Trigger.At]; ok {
			t.Errorf("tick %s ran twice: on %s and on %s", r.Trigger.At, other, r.Node)
		}
		seen[r.Trigger.At] = r.Node
	}
}

// TestClusterWebhook: a webhook service placed on n1 answers its requests
// through every node: n2 and n3 find its path among the cluster's
// services, authenticate the request themselves (the secrets are every
// node's) and have n1 run it; the answer is n1's run. Another service
// cannot mount its path through another node.
func TestClusterWebhook(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t, 3, func(_ int, c *node.Config) {
		c.Secrets = map[string]string{"github": "gh-key", "stamped": "st-key"}
	})
	if _, err := nodes[0].op.Submit(ctx, pack(t, hookService(t))); err != nil {
		t.Fatal(err)
	}
	answerOut := `{"http": {"status": 201, "headers": {"X-Id": "7"}, "body": {"ok": true}}, "noop": "answered"}`
	a := call(t, nodes[1].HooksAddr(), "PUT", "/hooks/open", answerOut, "Content-Type", "application/json")
	if a.status != 201 || a.header.Get("X-Id") != "7" || a.body != `{"ok":true}` {
		t.Fatalf("webhook through n2 = %d %v %q; want n1's answer, 201", a.status, a.header, a.body)
	}
	r, err := nodes[2].op.Run(ctx, "hook", a.header.Get("Andromeda-Run"))
	if err != nil || r.Node != "n1" || r.Trigger.Kind != "http" {
		t.Errorf("the run of a webhook through n2: %+v, %v; want an http run on n1", r, err)
	}
	echo := `{"echo": true}`
	if a := call(t, nodes[2].HooksAddr(), "POST", "/hooks/github", echo, "Content-Type", "application/json", "X-Hub-Signature-256", "sha256="+sign("gh-key", echo)); a.status != 200 {
		t.Errorf("signed webhook through n3 = %d %s", a.status, a.header.Get("Andromeda-Reason"))
	}
	if a := call(t, nodes[2].HooksAddr(), "POST", "/hooks/github", echo, "Content-Type", "application/json", "X-Hub-Signature-256", "sha256="+sign("wrong", echo)); a.status != 401 {
		t.Errorf("badly signed webhook through n3 = %d, want 401", a.status)
	}
	other := hookService(t, "name: hook", "name: other-hook")
	if _, err := nodes[1].op.Submit(ctx, pack(t, other)); err == nil || !strings.Contains(err.Error(), "is mounted by service hook") {
		t.Errorf("another service mounting /hooks/open through n2: %v, want a conflict", err)
	}
}

// clusterKill: a run in flight on n1 is killed through n2, which does not
// know it: the kill is forwarded to the node running it, answered as
// there, and the run recorded cancelled; a kill of an unknown run is
// still a 404.
func clusterKill(t *testing.T, nodes []*testNode) {
	t.Helper()
	ctx := context.Background()
	requireProcess(t, nodes[0])
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"main.py": "import time\n\ndef handle(input):\n    time.sleep(30)\n    return {\"noop\": \"slept\"}\n",
		"andromeda.yaml": "name: napper\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: command\n" +
			"triggers:\n  - {kind: manual}\nresources: {memory: 64Mi, timeout: 60s}\ncapabilities: {network: none}\n",
	})
	if _, err := nodes[0].op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	defer nodes[0].op.Remove(ctx, "napper")
	started, _, err := nodes[0].op.FireDetached(ctx, "napper", api.FireRequest{})
	if err != nil || started.ID == "" {
		t.Fatalf("a detached fire on n1 = %+v, %v", started, err)
	}
	res, err := nodes[1].op.Cancel(ctx, started.ID)
	if err != nil || res.Recorded == nil || res.Recorded.Outcome != "cancelled" || res.Recorded.Node != "n1" {
		t.Fatalf("kill through n2 of a run on n1 = %+v, %v; want it recorded cancelled on n1", res, err)
	}
	if _, err := nodes[2].op.Cancel(ctx, "06h0000000000000000"); status(err) != 404 {
		t.Errorf("kill through n3 of a run no node knows = %v, want 404", err)
	}
}
