package trigger

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkSchedulerLag measures the scheduler alone on the real clock:
// services triggers every second, their ticks spread over the second (as
// for services deployed at different times: interval triggers are anchored
// at their deploy) or all due at the same instant (aligned, the worst
// case), with callbacks that do nothing but note the time. It reports
// delivery lag (the callback's start minus the tick's scheduled time) as
// p50 and p99, and ticks per second. Each b.N is one second of ticks.
func BenchmarkSchedulerLag(b *testing.B) {
	for _, c := range []struct {
		services int
		aligned  bool
		goTimer  bool // the Go timer to the tick, as before sleepPrecise
	}{{1, false, true}, {1, false, false}, {10000, false, true}, {1000, false, false}, {10000, false, false}, {1000, true, false}, {10000, true, false}} {
		name := fmt.Sprintf("services=%d", c.services)
		if c.aligned {
			name += "/aligned"
		}
		if c.goTimer {
			name += "/go-timer"
		}
		services := c.services
		const period = time.Second
		b.Run(name, func(b *testing.B) {
			var mu sync.Mutex
			lags := make([]time.Duration, 0, services*b.N)
			s := NewScheduler(Config{}, func(ev Event) {
				lag := time.Since(ev.At)
				mu.Lock()
				lags = append(lags, lag)
				mu.Unlock()
			})
			s.precise = !c.goTimer
			anchor := time.Now().Truncate(time.Second)
			for i := range services {
				a := anchor
				if !c.aligned {
					a = anchor.Add(time.Duration(i) * period / time.Duration(services))
				}
				if err := s.Set(fmt.Sprintf("svc-%05d", i), []Spec{{Kind: KindCron, Every: period, Anchor: a}}); err != nil {
					b.Fatal(err)
				}
			}
			s.Start()
			defer s.Stop(b.Context())
			time.Sleep(period + period/2) // past the first round
			mu.Lock()
			lags = lags[:0]
			mu.Unlock()
			b.ResetTimer()
			time.Sleep(time.Duration(b.N) * period)
			b.StopTimer()
			mu.Lock()
			got := slices.Clone(lags)
			mu.Unlock()
			if len(got) == 0 {
				b.Fatal("no tick delivered")
			}
			slices.Sort(got)
			b.ReportMetric(float64(got[len(got)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(got[min(len(got)*99/100, len(got)-1)].Microseconds()), "p99-µs")
			b.ReportMetric(float64(len(got))/(float64(b.N)*period.Seconds()), "ticks/s")
		})
	}
}
