package crashtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
)

// TestClusterKill runs three `andromeda serve` processes routed into one
// cluster by serve's flags (--name, --cluster, --cluster-listen, --routes),
// each with its own data dir: every node lists all three up; one is
// SIGKILLed and the two left declare it lost once its last heartbeat is
// older than lost_after (and still answer, a majority); restarted on its
// data dir it rejoins and is up again everywhere.
func TestClusterKill(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go toolchain is needed to build andromeda")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "andromeda")
	if out, err := exec.Command("go", "build", "-o", bin, andromedaCmd).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const lostAfter = 2 * time.Second
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
	client := func(i int) *api.Client {
		tok, err := node.OperatorToken(filepath.Join(filepath.Dir(nodes[i].config), "data"))
		if err != nil {
			t.Fatal(err)
		}
		return api.NewClient(nodes[i].addr, tok)
	}
	health := func(c *api.Client) map[string]string {
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
	waitFor := func(c *api.Client, want map[string]string, within time.Duration) time.Duration {
		t.Helper()
		begin := time.Now()
		for {
			got := health(c)
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
	up := map[string]string{"n1": api.NodeUp, "n2": api.NodeUp, "n3": api.NodeUp}
	for i := range nodes {
		waitFor(client(i), up, 5*time.Second)
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

	if _, err := nodes[2].start(); err != nil {
		t.Fatalf("n3 restarted: %v", err)
	}
	for i := range nodes {
		waitFor(client(i), up, 5*time.Second)
	}
}
