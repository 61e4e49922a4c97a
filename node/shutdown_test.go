package node_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// TestShutdownGrace: a node's stop gives its runs in flight the config's
// lifecycle.stop_grace, then cancels those still running; each is
// recorded as cancelled by the node's shutdown, and the stop says so.
func TestShutdownGrace(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	grace := func(c *node.Config) { c.Data = data; c.Lifecycle.StopGrace = "1s" }
	n := startNode(t, grace)
	if _, err := n.op.Submit(ctx, pack(t, spinService(t, "spin", true))); err != nil {
		t.Fatal(err)
	}
	started, _, err := n.op.FireDetached(ctx, "spin", api.FireRequest{Message: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rs, err := n.op.Running(ctx, "spin"); err == nil && len(rs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the spin run is not in flight after 10 s")
		}
	}
	begin := time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	s := n.Stopped()
	if s.InFlight != 1 || s.Cancelled != 1 || s.Finished != 0 || s.Grace != time.Second {
		t.Errorf("Stopped() = %+v; want 1 in flight, cancelled after a 1s grace", s)
	}
	if s.Took < time.Second || took > 12*time.Second {
		t.Errorf("the stop took %s (Stopped says %s); want the 1s grace, then the cancel", took, s.Took)
	}
	n = startNode(t, grace)
	r, err := n.op.Run(ctx, "spin", started.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != "cancelled" || r.Error == "" || !strings.Contains(r.Error, "node shutdown") {
		t.Errorf("the run in flight at the stop was recorded %s (%s); want cancelled by the node's shutdown", r.Outcome, r.Error)
	}
}
