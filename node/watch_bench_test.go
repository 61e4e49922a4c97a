package node_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// BenchmarkWatchFanOut measures GET /v1/watch delivering to 100 clients
// at once: b.N events are stored (each as a run's lifecycle and runs
// store theirs, through the watch publisher and JetStream) and every
// client reads every one over its own HTTP connection. It reports
// events/s, the events delivered to all clients together per second,
// from the first event handed to the publisher to the last one read by
// the last client.
func BenchmarkWatchFanOut(b *testing.B) {
	const clients = 100
	n := startNode(b, func(c *node.Config) { c.HTTP.MaxConnsPerIP = 2 * clients })
	var delivered atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{}, clients)
	for range clients {
		req, _ := http.NewRequestWithContext(ctx, "GET", n.URL()+"/v1/watch?service=fanout", nil)
		req.Header.Set("Authorization", "Bearer "+n.op.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != 200 {
			b.Fatalf("watch: %s", resp.Status)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 64<<10)
			first := true
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if first {
					first = false
					ready <- struct{}{}
				}
				if bytes.HasPrefix(line, []byte("id: ")) {
					delivered.Add(1)
				}
			}
		}()
	}
	for range clients {
		<-ready
	}
	ev := api.WatchEvent{Kind: api.WatchRunEnd, Service: "fanout", Version: "1.0.0", Run: "01jd4k5m2n3p4q5r6s7t", Trigger: "triggers[0]", Outcome: "ok"}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		node.NotifyWait(n.Node, ev)
	}
	want := int64(clients) * int64(b.N)
	deadline := time.Now().Add(time.Minute + time.Duration(b.N)*time.Millisecond)
	for delivered.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d events delivered", delivered.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(want)/elapsed.Seconds(), "events/s")
	cancel()
	wg.Wait()
}
