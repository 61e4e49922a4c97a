package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/node"
)

// BenchmarkExecutions measures executions through the ledger: runs of a
// warm reactor each return 16 http actions to a local endpoint, and each
// action is planned in the ledger, recorded, marked sent, sent with its
// idempotency key and confirmed. One op is one execution confirmed; the
// latency is from the run's answer to the endpoint's answer, per action.
func BenchmarkExecutions(b *testing.B) {
	const perRun = 16
	var got atomic.Int64
	done := make(chan struct{}, 1)
	var want atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if got.Add(1) == want.Load() {
			select {
			case done <- struct{}{}:
			default:
			}
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	n := startNodeWith(b, realWasm(b), func(c *node.Config) { c.Executors.HTTP.AllowPrivate = true })
	svc := mirrorService(b, `network: ["api.example:443"]`, `network: ["`+host+`"]`, "actions: [submit, http]", "actions: [http]",
		"resources: {memory: 16Mi, timeout: 5s}", "resources: {memory: 16Mi, timeout: 5s, concurrency: 8}")
	ctx := context.Background()
	if _, err := n.op.Submit(ctx, pack(b, svc)); err != nil {
		b.Fatal(err)
	}
	var acts []string
	for i := range perRun {
		acts = append(acts, fmt.Sprintf(`{"kind": "http", "params": {"method": "POST", "url": "%s/x", "body": {"i": %d}}}`, srv.URL, i))
	}
	msg := json.RawMessage(`{"actions": [` + strings.Join(acts, ",") + `]}`)
	runs := max(1, b.N/perRun)
	want.Store(int64(runs * perRun))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(runs) {
				r, err := n.op.Fire(ctx, "mirror", msg)
				if err != nil || r.Outcome != "ok" {
					b.Errorf("fire: %+v, %v", r.Outcome, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d executions reached the endpoint", got.Load(), want.Load())
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(want.Load())/el.Seconds(), "executions/s")
}
