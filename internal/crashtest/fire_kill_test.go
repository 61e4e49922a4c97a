//go:build linux

package crashtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
)

// fireKillConns is how many callers fire at once: the service's
// concurrency, so every fire runs.
const fireKillConns = 16

// fireKillLookups is about how many answered runs of each kill are looked up
// through the API after the restart.
const fireKillLookups = 20

// TestKillUnderFireLoad checks group commit of run records against SIGKILL:
// many manual fires at once on a warm wasm reactor, so many run records wait
// for their acknowledgement together, then SIGKILL of the node's process
// group, a restart, and a look-up of a sample of the runs answered 200. At the end the
// store is read offline: every answered run is there, and none twice. 2
// kills (20 with ANDROMEDA_SOAK=1).
func TestKillUnderFireLoad(t *testing.T) {
	_, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go toolchain is needed to build andromeda and the wasm service")
	}
	kills := 2
	if os.Getenv("ANDROMEDA_SOAK") == "1" {
		kills = 20
	}
	ctx := context.Background()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "andromeda")
	if out, err := exec.Command("go", "build", "-o", bin, andromedaCmd).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	svcDir := filepath.Join(tmp, "fire-kill")
	testutil.CopyDir(t, filepath.Join("testdata", "firekill"), svcDir)
	if err := gobuild.Wasm(ctx, filepath.Join("..", "..", "node", "testdata", "mirror"), filepath.Join(svcDir, "main.wasm"), gobuild.Reactor); err != nil {
		t.Fatalf("build the wasm service: %v", err)
	}

	data := filepath.Join(tmp, "data")
	n := &killNode{t: t, bin: bin, logPath: filepath.Join(tmp, "node.log"), config: filepath.Join(tmp, "andromeda.yaml")}
	n.addr, n.natsAddr = testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := fmt.Sprintf("listen: %s\ndata: %s\nnats: {listen: %s}\nruns: {per_service: %d}\nlog: {format: json, level: info}\n",
		n.addr, data, n.natsAddr, killRunsPerService)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanup)
	if _, err := n.start(); err != nil {
		t.Fatalf("first start: %v", err)
	}
	token, err := node.OperatorToken(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := archive.Pack(svcDir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := api.NewClient(n.addr, token).Submit(ctx, b)
	if err == nil && res.Service.Status != "deployed" {
		err = fmt.Errorf("status %s: %s", res.Service.Status, res.Service.StatusDetail)
	}
	if err != nil {
		t.Fatalf("submit: %v", err)
	}

	const service = "fire-kill"
	answered := map[string]int{} // run id → the kill it was answered before
	refused := map[string]int{}
	var fires, found int
	for i := 1; i <= kills; i++ {
		c := api.NewClient(n.addr, token)
		ld := startFireLoad(c, service)
		time.Sleep(time.Duration(700+300*(i%3)) * time.Millisecond)
		n.kill()
		got := ld.wait()
		fires += got.fires
		for k, v := range got.refused {
			refused[k] += v
		}
		if _, err := n.start(); err != nil {
			t.Fatalf("kill %d: node not ready again: %v", i, err)
		}
		// A sample is looked up through the API while the node runs (one
		// look-up scans the stream); every answered run is checked
		// offline at the end.
		for j, id := range got.ids {
			if _, ok := answered[id]; ok {
				t.Errorf("kill %d: run id %s answered twice", i, id)
			}
			answered[id] = i
			if j%(len(got.ids)/fireKillLookups+1) != 0 && j != len(got.ids)-1 {
				continue
			}
			if _, err := c.Run(ctx, service, id); err != nil {
				t.Errorf("kill %d: run %s was answered 200 but is not found after the restart: %v", i, id, err)
				continue
			}
			found++
		}
		if len(got.ids) == 0 {
			t.Errorf("kill %d: no fire was answered 200 before the kill", i)
		}
		if t.Failed() {
			t.Fatalf("kill %d: stopping at the first kill that failed a check", i)
		}
	}

	if err := n.stop(30 * time.Second); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	st, done := openStoreOffline(t, data)
	defer done()
	runs, dups := allRuns(t, st, service)
	for _, id := range dups {
		t.Errorf("run %s is recorded more than once", id)
	}
	for id, i := range answered {
		if _, ok := runs[id]; !ok {
			t.Errorf("run %s answered 200 before kill %d is gone at the end", id, i)
		}
	}
	t.Logf("kills %d; fires %d: %d answered 200 (%d of them looked up and found after the restart), %d not answered %v; run records at the end %d, recorded twice %d",
		kills, fires, len(answered), found, fires-len(answered), refused, len(runs), len(dups))
}

type fireLoadResult struct {
	ids     []string
	fires   int
	refused map[string]int
}

// fireLoad fires one service from fireKillConns callers until wait.
type fireLoad struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	res  fireLoadResult
}

func startFireLoad(c *api.Client, service string) *fireLoad {
	l := &fireLoad{stop: make(chan struct{}), res: fireLoadResult{refused: map[string]int{}}}
	msg := json.RawMessage(`{"noop": "a fire under kill"}`)
	for range fireKillConns {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := c.Fire(ctx, service, msg)
				cancel()
				l.record(r, err)
				if err != nil {
					select {
					case <-l.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		})
	}
	return l
}

func (l *fireLoad) record(r api.Run, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.fires++
	var ae *api.Error
	switch {
	case err == nil:
		l.res.ids = append(l.res.ids, r.ID)
	case errors.As(err, &ae):
		l.res.refused[strconv.Itoa(ae.Status)]++
	default:
		l.res.refused["no answer"]++
	}
}

func (l *fireLoad) wait() fireLoadResult {
	close(l.stop)
	l.wg.Wait()
	return l.res
}
