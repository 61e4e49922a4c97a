//go:build unix

package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// fireConns is how many connections fire at once in BenchmarkFireThroughput.
const fireConns = 64

// BenchmarkFireThroughput measures manual fires over HTTP to a warm, trivial
// wasm reactor (four copies of mirror, saying it does nothing), 64 connections at
// once: runs answered 200 (so recorded) per second. Beside it, in the same
// benchmark and with the same client, a bare net/http handler doing no
// work, and the ratio of the two. CPU is the process's user+system time
// (node and client together) per request.
func BenchmarkFireThroughput(b *testing.B) {
	// The default policy caps a service's concurrency at 16: four copies
	// of the service take the 64 connections, 16 each.
	n := startNodeWith(b, realWasm(b), func(c *node.Config) { c.HTTP.MaxConnsPerIP = 4 * fireConns })
	ctx := context.Background()
	for i := range fireConns / 16 {
		svc := mirrorService(b, "name: mirror", fmt.Sprintf("name: mirror%d", i), "target: vault-7", fmt.Sprintf("target: vault-%d", i),
			"resources: {memory: 16Mi, timeout: 5s}", "resources: {memory: 16Mi, timeout: 5s, concurrency: 16}",
			`network: ["api.example:443"]`, "network: none", "actions: [submit, http]", "actions: []", "state: true", "state: false")
		if _, err := n.op.Submit(ctx, pack(b, svc)); err != nil {
			b.Fatal(err)
		}
	}
	tr := &http.Transport{MaxIdleConnsPerHost: fireConns, MaxConnsPerHost: fireConns}
	defer tr.CloseIdleConnections()
	c := api.NewClient(n.op.Base, n.op.Token)
	c.HTTP = &http.Client{Transport: tr}
	msg := json.RawMessage(`{"noop": "a benchmark run"}`)
	fire := func(conn int) error {
		r, err := c.Fire(ctx, fmt.Sprintf("mirror%d", conn%(fireConns/16)), msg)
		if err == nil && r.Outcome != "noop" {
			err = fmt.Errorf("fire: outcome %s (%s)", r.Outcome, r.Error)
		}
		return err
	}
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer bare.Close()
	bareClient := &http.Client{Transport: tr}
	get := func(int) error {
		resp, err := bareClient.Get(bare.URL)
		if err != nil {
			return err
		}
		var v any
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		return err
	}
	// Warm: the reactor's instances and the connections.
	load(b, 4*fireConns, fire)
	if b.Failed() {
		b.FailNow()
	}
	b.ResetTimer()
	fired, fcpu := load(b, b.N, fire)
	bared, bcpu := load(b, b.N, get)
	b.StopTimer()
	b.ReportMetric(fired, "runs/s")
	b.ReportMetric(bared, "bare-req/s")
	b.ReportMetric(fired/bared, "ratio")
	b.ReportMetric(fcpu, "cpu-µs/run")
	b.ReportMetric(bcpu, "cpu-µs/bare-req")
}

// load does count calls of call from fireConns goroutines and returns calls
// per second and the process's CPU µs per call.
func load(b *testing.B, count int, call func(conn int) error) (perSec, cpuPer float64) {
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for conn := range fireConns {
		wg.Go(func() {
			for next.Add(1) <= int64(count) {
				if err := call(conn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	return float64(count) / el.Seconds(), float64(cpu.Microseconds()) / float64(count)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
