package node_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// TestWatchOwnerOfReusedName: a service name removed and submitted again
// by another submitter carries each one's watch events to that one only:
// bob's runs of the name alice used before are his events, not hers.
func TestWatchOwnerOfReusedName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	ta, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := n.op.CreateToken(ctx, "bob", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(n.Addr(), ta.Secret)
	bob := api.NewClient(n.Addr(), tb.Secret)
	if _, err := alice.Submit(ctx, pack(t, example(t, "greeter"))); err != nil {
		t.Fatal(err)
	}
	aliceCh, aStop := openSSE(t, n.URL(), ta.Secret, "/v1/watch", 0)
	defer aStop()
	first, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.After(10 * time.Second); ; {
		select {
		case e := <-aliceCh:
			if e.ev.Run == first.ID && e.kind == api.WatchRunEnd {
				goto removed
			}
			continue
		case <-deadline:
			t.Fatalf("alice did not see her run %s finish", first.ID)
		}
	}
removed:
	if err := n.op.Remove(ctx, "greeter"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Submit(ctx, pack(t, example(t, "greeter"))); err != nil {
		t.Fatal(err)
	}
	bobCh, bStop := openSSE(t, n.URL(), tb.Secret, "/v1/watch", 0)
	defer bStop()
	time.Sleep(200 * time.Millisecond) // both streams open before the run
	run, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	bobSaw := map[string]bool{}
	for deadline := time.After(5 * time.Second); !bobSaw[api.WatchRunEnd]; {
		select {
		case e := <-aliceCh:
			if e.ev.Run == run.ID {
				t.Errorf("alice saw %s of bob's run %s", e.kind, run.ID)
			}
		case e := <-bobCh:
			if e.ev.Run == run.ID {
				bobSaw[e.kind] = true
			}
		case <-deadline:
			t.Fatalf("bob saw %v of his run %s in 5 s, want %s and %s", bobSaw, run.ID, api.WatchRunStart, api.WatchRunEnd)
		}
	}
	if !bobSaw[api.WatchRunStart] {
		t.Errorf("bob did not see his run %s start", run.ID)
	}
	// What alice's stream still had on its way.
	for quiet := time.After(300 * time.Millisecond); ; {
		select {
		case e := <-aliceCh:
			if e.ev.Run == run.ID {
				t.Errorf("alice saw %s of bob's run %s", e.kind, run.ID)
			}
			continue
		case <-quiet:
		}
		break
	}
}
