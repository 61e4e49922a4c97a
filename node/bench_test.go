package node_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// BenchmarkFireRoundTrip measures `andromeda fire` of a warm reactor service
// through the HTTP API: request, auth, invocation, state read, run record
// (acknowledged by JetStream), response.
func BenchmarkFireRoundTrip(b *testing.B) {
	ctx := context.Background()
	n := startNode(b)
	if _, err := n.op.Submit(ctx, pack(b, example(b, "greeter"))); err != nil {
		b.Fatal(err)
	}
	msg := json.RawMessage(`{"name":"bench"}`)
	if _, err := n.op.Fire(ctx, "greeter", msg); err != nil { // warm the instance
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, 1024)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		r, err := n.op.Fire(ctx, "greeter", msg)
		if err != nil {
			b.Fatal(err)
		}
		if r.Outcome != "ok" {
			b.Fatalf("outcome %s: %s", r.Outcome, r.Error)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
