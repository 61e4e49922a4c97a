package node_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"encoding/json"
	"io"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/wasm"
)

// readyzOf is GET /readyz's status and reason.
func readyzOf(t *testing.T, n *node.Node) (int, string) {
	t.Helper()
	resp, err := http.Get(n.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rd api.Readiness
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &rd)
	return resp.StatusCode, rd.Reason
}

// TestHoldReady: a node held before Start is not ready after Start
// ("starting: ..." on /readyz) until every hold is released.
func TestHoldReady(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.Data, cfg.Listen, cfg.Cache = t.TempDir(), "127.0.0.1:0", sharedCache(t)
	cfg.Docker.Enabled = false
	n, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	releaseDemo := n.HoldReady("deploying the demo services")
	releaseOther := n.HoldReady("something else")
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	code, reason := readyzOf(t, n)
	if code != http.StatusServiceUnavailable || !strings.Contains(reason, "starting: deploying the demo services; something else") {
		t.Fatalf("readyz while held = %d %q", code, reason)
	}
	releaseDemo()
	releaseDemo() // twice is harmless
	if code, reason := readyzOf(t, n); code != http.StatusServiceUnavailable || strings.Contains(reason, "demo") || !strings.Contains(reason, "something else") {
		t.Fatalf("readyz with one hold left = %d %q", code, reason)
	}
	releaseOther()
	if code, reason := readyzOf(t, n); code != http.StatusOK {
		t.Fatalf("readyz after release = %d %q", code, reason)
	}
	// A hold says how far its work is.
	say, release := n.HoldReadySay("building demo services (1/3)")
	say("building demo services (2/3)")
	if code, reason := readyzOf(t, n); code != http.StatusServiceUnavailable || !strings.HasSuffix(reason, "starting: building demo services (2/3)") {
		t.Fatalf("readyz while a hold says how far = %d %q", code, reason)
	}
	release()
	// A hold taken on a ready node makes it unready again.
	release = n.HoldReady("later")
	if err := n.Ready(); err == nil || !strings.Contains(err.Error(), "starting: later") {
		t.Fatalf("Ready with a later hold = %v", err)
	}
	release()
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
}

// slowTest is the wasm driver with a self-test that waits for release.
type slowTest struct {
	*wasm.Driver
	release chan struct{}
}

func (s slowTest) Test(ctx context.Context) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Driver.Test(ctx)
}

// TestStartDriversInBackground: Start returns while a driver's self-test
// still runs; /v1/node and a submission that needs the driver wait for it,
// and go on once it has passed.
func TestStartDriversInBackground(t *testing.T) {
	d := slowTest{Driver: wasm.New(wasm.Config{CacheDir: filepath.Join(sharedCache(t), "wasm")}), release: make(chan struct{})}
	started := make(chan *testNode, 1)
	go func() { started <- startNodeWith(t, d) }()
	var n *testNode
	select {
	case n = <-started:
	case <-time.After(30 * time.Second):
		close(d.release)
		t.Fatal("Start waited for the driver's self-test")
	}
	if err := n.Ready(); err != nil {
		t.Fatalf("node not ready while a self-test runs: %v", err)
	}
	ctx := context.Background()
	info := make(chan api.NodeInfo, 1)
	go func() {
		i, err := n.op.Node(ctx)
		if err != nil {
			t.Error(err)
		}
		info <- i
	}()
	submitted := make(chan error, 1)
	go func() {
		_, err := n.op.Submit(ctx, pack(t, example(t, "greeter")))
		submitted <- err
	}()
	select {
	case i := <-info:
		t.Fatalf("/v1/node answered while the wasm self-test ran: %+v", i.Drivers)
	case err := <-submitted:
		t.Fatalf("a wasm submission finished while the wasm self-test ran: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(d.release)
	if err := <-submitted; err != nil {
		t.Fatalf("submit after the self-test: %v", err)
	}
	i := <-info
	for _, dr := range i.Drivers {
		if dr.Name == "wasm" && (!dr.Enabled || dr.Reason != "") {
			t.Fatalf("/v1/node says wasm %+v after its self-test passed", dr)
		}
	}
}
