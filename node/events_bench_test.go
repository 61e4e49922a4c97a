package node_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
)

// BenchmarkEventLatency measures one event at a time on the embedded bus,
// published in process as the API and emits publish (Node.Publish: checks,
// JetStream publish and its ack), to a warm wasm reactor (the greeter, on
// an event trigger, concurrency 4). It reports, each as p50 and p99:
// publish-ack, the Publish call alone; start, from just before Publish to
// the moment the driver's Invoke begins (the node has fetched the event,
// taken a slot, built the input); recorded, from just before Publish to
// the run recorded in the store, just before the event's ack. The message
// has no name, so each run is a noop: no emit, nothing but the trigger
// path and the record.
func BenchmarkEventLatency(b *testing.B) {
	ctx := context.Background()
	drv := realWasm(b)
	n := startNodeWith(b, drv)
	type stamp struct {
		seq uint64
		at  time.Time
	}
	started := make(chan stamp, 16)
	recorded := make(chan stamp, 16)
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		started <- stamp{in.Trigger.Seq, time.Now()}
		return invoke()
	})
	node.OnEventRecorded(n.Node, func(seq uint64) { recorded <- stamp{seq, time.Now()} })
	dir := example(b, "greeter")
	editManifest(b, dir, "  - {kind: manual, input: {name: world}}", "  - {kind: event, topic: bench}")
	if _, err := n.op.Submit(ctx, pack(b, dir)); err != nil {
		b.Fatal(err)
	}
	op := server.Principal{Name: "operator", Role: api.RoleOperator}
	msg := json.RawMessage(`{}`)
	one := func() (publish, start, rec time.Duration) {
		t0 := time.Now()
		pub, err := n.Publish(ctx, op, "bench", msg)
		if err != nil {
			b.Fatal(err)
		}
		publish = time.Since(t0)
		for _, ch := range []chan stamp{started, recorded} {
			select {
			case s := <-ch:
				if s.seq != pub.Sequence {
					b.Fatalf("event %d seen while waiting for %d", s.seq, pub.Sequence)
				}
				if ch == started {
					start = s.at.Sub(t0)
				} else {
					rec = s.at.Sub(t0)
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("event %d: no run after 10s", pub.Sequence)
			}
		}
		return publish, start, rec
	}
	for range 50 { // warm the instance, the consumer and the store
		one()
	}
	var pubs, starts, recs []time.Duration
	b.ResetTimer()
	for b.Loop() {
		p, s, r := one()
		pubs, starts, recs = append(pubs, p), append(starts, s), append(recs, r)
	}
	b.StopTimer()
	reportLatency(b, "publish-ack", pubs)
	reportLatency(b, "start", starts)
	reportLatency(b, "recorded", recs)
}

// reportLatency reports the p50 and p99 of lat in microseconds as
// name-p50-µs and name-p99-µs.
func reportLatency(b *testing.B, name string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e3 }
	b.ReportMetric(pct(0.50), name+"-p50-µs")
	b.ReportMetric(pct(0.99), name+"-p99-µs")
}
