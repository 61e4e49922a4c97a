package crashtest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
)

// TestClusterKill runs three `andromeda serve` processes routed into one
// cluster by serve's flags (--name, --cluster, --cluster-listen, --routes),
// each with its own data dir: every node lists all three up. A cron
// service ticking every second is submitted to n3, which runs it; n3 is
// SIGKILLed: the two left declare it lost once its last heartbeat is older
// than lost_after, one of them takes the service over and runs it, and no
// tick runs twice over the whole time. Restarted on its data dir, n3
// rejoins, is up again everywhere, and does not run the service (another
// node holds it). Then, round after round, the node holding the service
// is SIGKILLed and restarted (one more round in CI, twenty kills in all
// with ANDROMEDA_SOAK=1): the kill → first tick elsewhere is logged with
// its p50 and p99, and over every round no tick runs twice.
func TestClusterKill(t *testing.T) {
	const lostAfter = 2 * time.Second
	kc := startKillCluster(t, lostAfter)
	tmp, nodes, client, waitFor, up := kc.tmp, kc.nodes, kc.client, kc.waitFor, kc.up

	// The heartbeat example, every second, submitted to n3.
	ctx := context.Background()
	b := heartbeatService(t, tmp, "heartbeat")
	c3 := client(2)
	if res, err := c3.Submit(ctx, b); err != nil || res.Service.Node != "n3" {
		t.Fatalf("submit to n3: %+v, %v", res.Service, err)
	}
	ticks := func(c *api.Client) ([]api.Run, map[string]int) {
		t.Helper()
		// While the cluster elects new leaders for the streams the killed
		// node led, reads may fail for a few seconds.
		var runs []api.Run
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if runs, err = c.Runs(ctx, "heartbeat", 1000); err == nil || time.Now().After(deadline) {
				break
			}
			t.Logf("runs not read (%v), again", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]int{}
		var out []api.Run
		for _, r := range runs {
			if r.Trigger.Kind == "cron" {
				out = append(out, r)
				by[r.Node]++
			}
		}
		return out, by
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, by := ticks(c3); by["n3"] >= 3 {
			break
		}
		if time.Now().After(deadline) {
			_, by := ticks(c3)
			t.Fatalf("cron runs by node %v, want 3 on n3", by)
		}
	}

	// A service whose runs take three seconds, on n3 too: the kill comes
	// while one is in flight.
	slow := filepath.Join(tmp, "slowtick")
	testutil.CopyDir(t, filepath.Join("testdata", "slowtick"), slow)
	if err := gobuild.Wasm(ctx, filepath.Join("testdata", "slowtick"), filepath.Join(slow, "main.wasm"), gobuild.Command); err != nil {
		t.Fatalf("build the slow service: %v", err)
	}
	os.Remove(filepath.Join(slow, "main.go"))
	b, err := archive.Pack(slow)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c3.Submit(ctx, b); err != nil || res.Service.Node != "n3" {
		t.Fatalf("submit slowtick to n3: %+v, %v", res.Service, err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if fl, err := c3.Running(ctx, "slowtick"); err == nil && len(fl) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no run of slowtick in flight on n3 within 15 s")
		}
	}

	c1, c2 := client(0), client(1)
	killed := time.Now()
	nodes[2].kill()
	lost := map[string]string{"n1": api.NodeUp, "n2": api.NodeUp, "n3": api.NodeLost}
	// lost_after from its last heartbeat, and the time the two left take to
	// elect new leaders for the streams it led.
	waitFor(c1, lost, lostAfter+10*time.Second)
	took := time.Since(killed)
	waitFor(c2, lost, 5*time.Second)
	if took < lostAfter-500*time.Millisecond {
		t.Errorf("n3 declared lost %v after its kill, before lost_after (%v) could have passed since its last heartbeat", took, lostAfter)
	}
	t.Logf("n3 SIGKILLed: declared lost by n1 after %v (lost_after %v, heartbeat 400ms)", took.Round(time.Millisecond), lostAfter)

	// Taken over: the first tick elsewhere, then a few more.
	var first time.Time
	for deadline := time.Now().Add(lostAfter + 30*time.Second); ; time.Sleep(100 * time.Millisecond) {
		runs, by := ticks(c1)
		if first.IsZero() {
			for _, r := range runs {
				if r.Node != "n3" && (first.IsZero() || r.Start.Before(first)) {
					first = r.Start
				}
			}
		}
		if by["n1"]+by["n2"] >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cron runs by node %v %v after the kill, want 3 on n1 or n2", by, time.Since(killed))
		}
	}
	t.Logf("failover: kill → first tick elsewhere %v", first.Sub(killed).Round(time.Millisecond))

	// The slow run in flight at the kill is recorded as lost, by the node
	// that took slowtick over, once.
	var lostRuns []api.Run
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		runs, err := c1.Runs(ctx, "slowtick", 100)
		lostRuns = lostRuns[:0]
		for _, r := range runs {
			if r.Outcome == "lost" {
				lostRuns = append(lostRuns, r)
			}
		}
		if err == nil && len(lostRuns) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slowtick run recorded as lost 30 s after the takeover (runs: %v, %v)", len(runs), err)
		}
	}
	if len(lostRuns) != 1 || lostRuns[0].Node != "n3" || !strings.Contains(lostRuns[0].Error, "node n3 was lost") || !lostRuns[0].Start.Before(killed) {
		t.Errorf("lost runs = %+v, want one, of n3, started before the kill", lostRuns)
	}

	if _, err := nodes[2].start(); err != nil {
		t.Fatalf("n3 restarted: %v", err)
	}
	for i := range nodes {
		waitFor(client(i), up, 5*time.Second)
	}
	_, before := ticks(c1)
	time.Sleep(3 * time.Second)
	_, after := ticks(c1)
	if after["n3"] != before["n3"] {
		t.Errorf("n3 runs the service again after its restart (%d then %d runs), though another node holds it", before["n3"], after["n3"])
	}

	// Again: each round SIGKILLs the node that holds the heartbeat service
	// now, times the kill → first tick elsewhere, and restarts it. CI runs
	// one more round, ANDROMEDA_SOAK=1 twenty in all.
	failovers := []time.Duration{first.Sub(killed)}
	rounds := 2
	if os.Getenv("ANDROMEDA_SOAK") == "1" {
		rounds = 20
	}
	for round := 2; round <= rounds; round++ {
		svc, err := c1.Service(ctx, "heartbeat")
		if err != nil {
			t.Fatal(err)
		}
		h := int(svc.Node[1] - '1')
		other := client((h + 1) % 3)
		killed := time.Now()
		nodes[h].kill()
		var took time.Duration
		for deadline := time.Now().Add(lostAfter + 30*time.Second); took == 0; time.Sleep(100 * time.Millisecond) {
			runs, _ := ticks(other)
			for _, r := range runs {
				if r.Node != svc.Node && r.Start.After(killed) && (took == 0 || r.Start.Sub(killed) < took) {
					took = r.Start.Sub(killed)
				}
			}
			if took == 0 && time.Now().After(deadline) {
				t.Fatalf("round %d: no tick elsewhere %v after %s was killed", round, time.Since(killed), svc.Node)
			}
		}
		failovers = append(failovers, took)
		t.Logf("round %d: %s SIGKILLed, first tick elsewhere %v after", round, svc.Node, took.Round(time.Millisecond))
		if _, err := nodes[h].start(); err != nil {
			t.Fatalf("round %d: %s restarted: %v", round, svc.Node, err)
		}
		for i := range nodes {
			waitFor(client(i), up, 15*time.Second)
		}
	}
	slices.Sort(failovers)
	rank := func(p float64) time.Duration { // nearest rank
		return failovers[int(math.Ceil(p*float64(len(failovers))))-1].Round(time.Millisecond)
	}
	t.Logf("failover over %d kills (lost_after %v): p50 %v, p99 %v, min %v", len(failovers), lostAfter, rank(0.50), rank(0.99), failovers[0].Round(time.Millisecond))

	runs, after := ticks(c1)
	seen := map[string]string{}
	for _, r := range runs {
		if other, ok := seen[r.Trigger.At]; ok {
			t.Errorf("tick %s ran twice: on %s and on %s", r.Trigger.At, other, r.Node)
		}
		seen[r.Trigger.At] = r.Node
	}
	t.Logf("cron runs by node: %v", after)
}

// killCluster is three `andromeda serve` processes routed into one cluster
// by serve's flags, each with its own data dir, all up.
type killCluster struct {
	t     *testing.T
	tmp   string
	nodes []*killNode
	up    map[string]string
}

// startKillCluster builds andromeda and starts three nodes (heartbeat
// 400 ms, lost_after as given) side by side, and waits until each lists
// all three up.
func startKillCluster(t *testing.T, lostAfter time.Duration) *killCluster {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go toolchain is needed to build andromeda")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "andromeda")
	if out, err := exec.Command("go", "build", "-o", bin, andromedaCmd).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	routes := []string{testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)}
	nodes := make([]*killNode, 3)
	for i := range nodes {
		dir := filepath.Join(tmp, fmt.Sprintf("n%d", i+1))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		n := &killNode{t: t, bin: bin, logPath: filepath.Join(dir, "node.log"), config: filepath.Join(dir, "andromeda.yaml")}
		n.addr = testutil.FreeAddr(t)
		cfg := fmt.Sprintf("listen: %s\ndata: %s\ncluster: {heartbeat: 400ms, lost_after: %s}\nlog: {format: json, level: info}\ndocker: {enabled: false}\n",
			n.addr, filepath.Join(dir, "data"), lostAfter)
		if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		n.args = []string{"--name", fmt.Sprintf("n%d", i+1), "--cluster", "crash", "--cluster-listen", routes[i], "--routes", strings.Join(routes, ",")}
		t.Cleanup(n.cleanup)
		nodes[i] = n
	}
	// Side by side: each start waits for a majority of the cluster.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, n := range nodes {
		wg.Go(func() { _, errs[i] = n.start() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("n%d: %v\n%s", i+1, err, nodes[i].logSince(0))
		}
	}
	kc := &killCluster{t: t, tmp: tmp, nodes: nodes, up: map[string]string{"n1": api.NodeUp, "n2": api.NodeUp, "n3": api.NodeUp}}
	for i := range nodes {
		kc.waitFor(kc.client(i), kc.up, 5*time.Second)
	}
	return kc
}

// client is an operator's client of node i.
func (kc *killCluster) client(i int) *api.Client {
	tok, err := node.OperatorToken(filepath.Join(filepath.Dir(kc.nodes[i].config), "data"))
	if err != nil {
		kc.t.Fatal(err)
	}
	return api.NewClient(kc.nodes[i].addr, tok)
}

// health is the nodes' health as c's node judges it.
func (kc *killCluster) health(c *api.Client) map[string]string {
	ns, err := c.Nodes(context.Background())
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	out := map[string]string{}
	for _, n := range ns {
		out[n.Name] = n.Health
	}
	return out
}

// waitFor waits until c's node judges the nodes as want, and returns how
// long that took; it fails the test after within.
func (kc *killCluster) waitFor(c *api.Client, want map[string]string, within time.Duration) time.Duration {
	t := kc.t
	t.Helper()
	begin := time.Now()
	for {
		got := kc.health(c)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return time.Since(begin)
		}
		if time.Since(begin) > within {
			ns, err := c.Nodes(context.Background())
			var detail []string
			for _, n := range ns {
				detail = append(detail, fmt.Sprintf("%s: %s, heartbeat %.0f ms ago (stored %s)", n.Name, n.Health, n.BeatAgeMs, n.Beat.Format("15:04:05.000")))
			}
			t.Fatalf("nodes = %v after %v, want %v (%v; now %s)", detail, within, want, err, time.Now().UTC().Format("15:04:05.000"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// heartbeatService is an archive of the heartbeat example (a command-mode
// wasm service) ticking every second, named name.
func heartbeatService(t *testing.T, tmp, name string) []byte {
	t.Helper()
	svc := filepath.Join(tmp, name)
	testutil.CopyDir(t, filepath.Join("..", "..", "examples", "heartbeat"), svc)
	m, err := os.ReadFile(filepath.Join(svc, "andromeda.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m = bytes.Replace(m, []byte(`schedule: "*/15 * * * * *"`), []byte(`every: 1s`), 1)
	m = bytes.Replace(m, []byte("name: heartbeat"), []byte("name: "+name), 1)
	if err := os.WriteFile(filepath.Join(svc, "andromeda.yaml"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(svc, "main.go"))
	if err := gobuild.Wasm(context.Background(), filepath.Join("..", "..", "examples", "heartbeat"), filepath.Join(svc, "main.wasm"), gobuild.Command); err != nil {
		t.Fatalf("build the wasm service: %v", err)
	}
	b, err := archive.Pack(svc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
