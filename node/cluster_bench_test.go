package node_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// BenchmarkClusterFire fires the greeter through the API of the node that
// runs it (local) and through another node of the same three-node cluster
// (forwarded over a NATS request to the node that runs it), in the same
// run: p50 and p99 of each round trip, HTTP included.
func BenchmarkClusterFire(b *testing.B) {
	ctx := context.Background()
	nodes := startCluster(b, 3)
	if _, err := nodes[0].op.Submit(ctx, pack(b, example(b, "greeter"))); err != nil {
		b.Fatal(err)
	}
	in := json.RawMessage(`{"name":"Ada"}`)
	for _, tc := range []struct {
		name string
		via  *testNode
	}{{"local", nodes[0]}, {"forwarded", nodes[1]}} {
		b.Run(tc.name, func(b *testing.B) {
			for range 20 { // warm: the worker, the connections
				if _, err := tc.via.op.Fire(ctx, "greeter", in); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				run, err := tc.via.op.Fire(ctx, "greeter", in)
				if err != nil || run.Node != "n1" {
					b.Fatalf("fire via %s: %+v, %v", tc.via.cfg.Name, run.Node, err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}
