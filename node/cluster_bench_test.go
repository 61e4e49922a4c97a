package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/node"
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

// answerService is an archive of the smallest wasm reactor (it answers
// {"answer": 42}), named name, with placement (a YAML flow mapping, ""
// for none).
func answerService(b *testing.B, name, placement string) []byte {
	b.Helper()
	wasm, err := os.ReadFile(filepath.Join("..", "bench", "testdata", "answer.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), name)
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: answer.wasm}\nmode: server\ncapabilities: {network: none}\n"
	if placement != "" {
		m += "placement: " + placement + "\n"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "answer.wasm"), wasm, 0o644); err != nil {
		b.Fatal(err)
	}
	return pack(b, dir)
}

// BenchmarkClusterPlace measures placement in a three-node cluster:
//   - decide: the placement decision alone (the registry's offers, labels,
//     drivers and bounds, ordered by services held) for a manifest with
//     spread;
//   - submit-here / submit-spread: b.N services (the smallest wasm
//     reactor, each its own name) submitted to n1 by 8 clients at once,
//     each answered once it is admitted, stored (R3) and deployed: without
//     placement all stay on n1; with spread two thirds go to the other
//     nodes, whose own admissions run beside n1's. placements/s is b.N
//     over the wall time; p50 and p99 are one submission's round trip.
//
// go test ./node -run '^$' -bench BenchmarkClusterPlace -benchtime 1000x
func BenchmarkClusterPlace(b *testing.B) {
	ctx := context.Background()
	nodes := startCluster(b, 3, func(i int, cfg *node.Config) {
		cfg.Cluster.Labels = map[string]string{"zone": []string{"a", "b", "b"}[i]}
	})
	waitHealth(b, nodes[0], "n3", api.NodeUp, 10*time.Second)
	b.Run("decide", func(b *testing.B) {
		m := &manifest.Service{Name: "x", Runtime: manifest.Runtime{Driver: manifest.DriverWasm},
			Placement: manifest.Placement{Labels: map[string]string{"zone": "b"}, Spread: true}}
		for b.Loop() {
			if order, _ := node.PlacementFor(nodes[0].Node, m); len(order) != 2 {
				b.Fatalf("placement order %v, want n2 and n3", order)
			}
		}
	})
	round := 0
	for _, tc := range []struct{ name, placement string }{{"submit-here", ""}, {"submit-spread", "{spread: true}"}} {
		b.Run(tc.name, func(b *testing.B) {
			round++
			archives := make([][]byte, b.N)
			for i := range archives {
				archives[i] = answerService(b, fmt.Sprintf("p%d-%d", round, i), tc.placement)
			}
			lat := make([]time.Duration, b.N)
			by := make([]string, b.N)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			began := time.Now()
			for range 8 {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						start := time.Now()
						res, err := nodes[0].op.Submit(ctx, archives[i])
						if err != nil {
							b.Errorf("submit %d: %v", i, err)
							return
						}
						lat[i], by[i] = time.Since(start), res.Service.Node
					}
				})
			}
			wg.Wait()
			took := time.Since(began)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/took.Seconds(), "placements/s")
			reportPercentiles(b, lat)
			count := map[string]int{}
			for _, n := range by {
				count[n]++
			}
			b.Logf("%d services placed in %v: %v", b.N, took.Round(time.Millisecond), count)
		})
	}
}
