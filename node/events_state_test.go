package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestEventRunsOnceAfterLostConsumerState: the embedded JetStream writes a
// consumer's state (what it delivered, what was acknowledged) to disk about
// ten times a second, so a node SIGKILLed just after an event's run was
// recorded and acknowledged can come back with a consumer that never
// delivered the event, and delivers it again as a first delivery. The
// test makes that state on disk: it saves the consumer's state file while
// the event waits undelivered, lets the event run and be acknowledged, and
// puts the saved file back before the next start. The event must not run
// a second time.
func TestEventRunsOnceAfterLostConsumerState(t *testing.T) {
	ctx := context.Background()
	var invoked atomic.Int32
	count := func(d *intercepted) *intercepted {
		d.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
			invoked.Add(1)
			return invoke()
		})
		return d
	}
	n := startNodeWith(t, count(realWasm(t)))
	eventGreeter(t, n.op, "greeter", "lost-state", 1)
	cons, err := node.EventConsumers(ctx, n.Node, "greeter")
	if err != nil || len(cons) != 1 {
		t.Fatalf("consumers = %v, %v; want one", cons, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	// The event is stored while the node is down: the consumer's state on
	// disk has not delivered it.
	natsDir := filepath.Join(n.cfg.Data, "nats")
	b, err := bus.Open(ctx, bus.Config{Dir: natsDir})
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(map[string]string{"name": "once"})
	if _, err := b.JS.Publish(ctx, bus.EventSubject("lost-state"), msg); err != nil {
		t.Fatal(err)
	}
	b.Close()
	stateFile := filepath.Join(natsDir, "jetstream", "jetstream", "$G", "streams", bus.StreamEvents, "obs", cons[0], "o.dat")
	before, err := os.ReadFile(stateFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}

	second := restartWith(t, n.cfg, count(realWasm(t)))
	waitSettled(t, second, "lost-state")
	if runs := allRuns(t, second.op, "greeter"); len(runs) != 1 || greeted(t, runs[0]) != "once" {
		t.Fatalf("%d runs after the event was published (%s); want it run once", len(runs), runOutcomes(runs))
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}

	// What a SIGKILL before the consumer's state was written leaves.
	if before == nil {
		err = os.Remove(stateFile)
	} else {
		err = os.WriteFile(stateFile, before, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	third := restartWith(t, n.cfg, count(realWasm(t)))
	waitSettled(t, third, "lost-state")
	if runs := allRuns(t, third.op, "greeter"); len(runs) != 1 || invoked.Load() != 1 {
		t.Fatalf("%d runs (%s), %d invocations after the consumer lost its state; want the event run once", len(runs), runOutcomes(runs), invoked.Load())
	}
}

// waitSettled waits until the greeter's consumer on topic has delivered
// every event and has none unacknowledged.
func waitSettled(t *testing.T, n *testNode, topic string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, unacked, err := node.EventsWaiting(context.Background(), n.Node, "greeter", 0, topic)
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 && unacked == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events pending, %d unacknowledged after 30s; want all settled", pending, unacked)
		}
		time.Sleep(20 * time.Millisecond) // polling the consumer's state
	}
}

// runOutcomes says, for a failure message, how each run began and ended.
func runOutcomes(runs []api.Run) string {
	var b strings.Builder
	for i, r := range runs {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s seq %d: %s %s", r.ID, r.Trigger.Kind, r.Trigger.Seq, r.Outcome, r.Error)
	}
	return b.String()
}
