package node_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/usage"
)

// TestNetworkUsageRecorded: the network bytes a driver measures (the
// docker driver's sandbox.Usage.NetworkRx and NetworkTx) reach the run
// record, the signed usage record and the usage totals. The wasm driver
// measures none, so the test adds them to what its real guest reported.
func TestNetworkUsageRecorded(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	if _, err := n.op.Submit(ctx, pack(t, example(t, "greeter"))); err != nil {
		t.Fatal(err)
	}
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		exit, err := invoke()
		exit.Usage.NetworkRx, exit.Usage.NetworkTx = 1500, 300
		return exit, err
	})
	r, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name": "Ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Usage.NetworkRx != 1500 || r.Usage.NetworkTx != 300 {
		t.Errorf("run usage = %+v, want network 1500 in, 300 out", r.Usage)
	}
	rep, err := n.op.Usage(ctx, "greeter", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Records) != 1 || rep.Totals.NetworkRx != 1500 || rep.Totals.NetworkTx != 300 {
		t.Fatalf("usage report: %d records, totals %+v", len(rep.Records), rep.Totals)
	}
	key, err := attest.ParsePublicKey(rep.NodeKey)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := usage.Verify(rep.Records[0], ed25519.PublicKey(key))
	if err != nil || rec.NetworkRx != 1500 || rec.NetworkTx != 300 || rec.RunID != r.ID {
		t.Errorf("signed record = %+v, %v", rec, err)
	}
}
