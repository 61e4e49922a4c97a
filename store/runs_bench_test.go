package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/store"
)

// BenchmarkAppendRunConcurrent compares the synchronous append (one publish
// and ack per record) with group commit (AppendRun: records in flight
// together, each caller waiting for its own ack), side by side, for 1, 8 and
// 64 concurrent callers. It reports runs/s and the p50/p99 of one call.
func BenchmarkAppendRunConcurrent(b *testing.B) {
	s := open(b, store.Config{})
	var seq atomic.Int64
	modes := []struct {
		name   string
		append func(context.Context, store.Run) error
	}{
		{"sync", s.AppendRunSync},
		{"group", s.AppendRun},
	}
	for _, callers := range []int{1, 8, 64} {
		for _, m := range modes {
			b.Run(fmt.Sprintf("callers=%d/%s", callers, m.name), func(b *testing.B) {
				ctx := context.Background()
				lat := make([][]time.Duration, callers)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for c := range callers {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							id := fmt.Sprintf("r%09d", seq.Add(1))
							t0 := time.Now()
							if err := m.append(ctx, store.Run{ID: id, Service: fmt.Sprintf("svc%02d", c%8), Outcome: "ok"}); err != nil {
								b.Error(err)
								return
							}
							lat[c] = append(lat[c], time.Since(t0))
						}
					})
				}
				wg.Wait()
				el := time.Since(start)
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				if len(all) == 0 {
					return
				}
				b.ReportMetric(float64(len(all))/el.Seconds(), "runs/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
