package node_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/node"
)

// freeAddrs are k local addresses free a moment ago.
func freeAddrs(t testing.TB, k int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
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
	for _, n := range nodes {
		seen := nodesOf(t, n)
		if len(seen) != 3 {
			t.Fatalf("%s lists %d nodes, want 3: %+v", n.cfg.Name, len(seen), seen)
		}
		for _, m := range nodes {
			c := seen[m.cfg.Name]
			if c.Health != api.NodeUp || c.API != m.Addr() || c.Cluster != "test-cluster" || c.Route != m.cfg.Cluster.Listen || c.Self != (m == n) {
				t.Errorf("%s sees %s as %+v", n.cfg.Name, m.cfg.Name, c)
			}
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

	// Until placement is built, a service would run on every node: refused.
	_, err = nodes[0].op.Submit(context.Background(), pack(t, example(t, "greeter")))
	if err == nil || !strings.Contains(err.Error(), "placing a service on one of its nodes is not built yet") {
		t.Errorf("submit to a node of a cluster = %v, want refused until placement", err)
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
