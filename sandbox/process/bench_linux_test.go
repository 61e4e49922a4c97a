package process

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// benchInput is a 100-byte contract input asking the conformance guest to
// echo a string (the same input as the wasm driver's benchmarks).
var benchInput = func() []byte {
	const head, tail = `{"run_id":"bench-1","service":"bench","trigger":{"kind":"manual"},"message":{"do":"echo","data":"`, `"}}`
	return []byte(head + strings.Repeat("x", 100-len(head)-len(tail)) + tail)
}()

// latencies records the duration of each iteration and reports p50, p99
// and calls per second.
type latencies struct {
	d []time.Duration
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	var sum time.Duration
	for _, d := range l.d {
		sum += d
	}
	b.ReportMetric(float64(l.d[len(l.d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(l.d[min(len(l.d)*99/100, len(l.d)-1)].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(len(l.d))/sum.Seconds(), "calls/s")
	if os.Getenv("ANDROMEDA_BENCH_HIST") != "" {
		for _, q := range []int{75, 90, 95, 98} {
			b.Logf("p%d %v", q, l.d[len(l.d)*q/100])
		}
	}
}

// invokeLoop invokes dep b.N times with the echo input and reports the
// latency figures.
func invokeLoop(b *testing.B, dep sandbox.Deployment) {
	ctx := context.Background()
	if exit, err := dep.Invoke(ctx, benchInput); err != nil || exit.Outcome != sandbox.OK || !strings.Contains(string(exit.Output), `"topic":"echo"`) {
		b.Fatalf("echo = %s %s (%s), %v", exit.Outcome, exit.Output, exit.Detail, err)
	}
	l := latencies{d: make([]time.Duration, 0, b.N)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		exit, err := dep.Invoke(ctx, benchInput)
		l.d = append(l.d, time.Since(start))
		if err != nil || exit.Outcome != sandbox.OK {
			b.Fatalf("Invoke = %s (%s), %v", exit.Outcome, exit.Detail, err)
		}
	}
	b.StopTimer()
	l.report(b)
}

// BenchmarkInvoke is the warm round trip of a 100-byte JSON echo through
// Deployment.Invoke: a server-mode worker in its sandbox, the runtime
// protocol over its pipes, usage from its cgroup. exec is the Go guest
// (runtimes/go), node and python the guests behind their shims.
func BenchmarkInvoke(b *testing.B) {
	requireSandbox(b)
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		b.Run(lang, func(b *testing.B) {
			requireLang(b, lang)
			dir, entry := guest(b, lang)
			d := newDriver(b, testConfig())
			dep := deploy(b, d, sandbox.Spec{Service: "bench-" + lang, Dir: dir, Entry: entry, Language: lang, Limits: sandbox.Limits{Concurrency: 1}})
			invokeLoop(b, dep)
		})
	}
}

// BenchmarkPrewarmed is one command-mode invocation on a worker Prewarm
// started before it (outside the timed part), the way a cron tick finds
// it: the echo and the worker's shutdown, no start. Compare with
// BenchmarkColdStart in the same run.
func BenchmarkPrewarmed(b *testing.B) {
	requireSandbox(b)
	ctx := context.Background()
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		b.Run(lang, func(b *testing.B) {
			requireLang(b, lang)
			dir, entry := guest(b, lang)
			d := newDriver(b, testConfig())
			dep := deploy(b, d, sandbox.Spec{Service: "prewarmed-" + lang, Dir: dir, Entry: entry, Language: lang, Mode: sandbox.ModeCommand})
			l := latencies{d: make([]time.Duration, 0, b.N)}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if err := dep.Prewarm(ctx, time.Minute); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				exit, err := dep.Invoke(ctx, benchInput)
				l.d = append(l.d, time.Since(start))
				if err != nil || exit.Outcome != sandbox.OK || exit.Usage.Start != 0 {
					b.Fatalf("Invoke = %s (%s) after a start of %v, %v", exit.Outcome, exit.Detail, exit.Usage.Start, err)
				}
			}
			b.StopTimer()
			l.report(b)
		})
	}
}

// BenchmarkColdStart is one command-mode invocation: a new sandbox, the
// interpreter's start, the module's load, init and ready, the echo, and
// the worker's shutdown (which overlaps the next iteration).
func BenchmarkColdStart(b *testing.B) {
	requireSandbox(b)
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		b.Run(lang, func(b *testing.B) {
			requireLang(b, lang)
			dir, entry := guest(b, lang)
			d := newDriver(b, testConfig())
			dep := deploy(b, d, sandbox.Spec{Service: "cold-" + lang, Dir: dir, Entry: entry, Language: lang, Mode: sandbox.ModeCommand})
			invokeLoop(b, dep)
		})
	}
}
