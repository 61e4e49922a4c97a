package goplugin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// bins holds the two binaries, built once per test binary.
var bins struct {
	dir string
	err error
}

// TestMain makes the test binary the sandbox init when the process driver
// re-executes it, and builds the plugin and the worker.
func TestMain(m *testing.M) {
	process.MaybeInit()
	dir, err := os.MkdirTemp("", "andromeda-goplugin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	for _, name := range []string{"echoplugin", "echoworker"} {
		out := filepath.Join(dir, name, name)
		if err := sandboxtest.GoBuild("./"+name, out, []string{"CGO_ENABLED=0"}); err != nil {
			bins.err = err
		}
		_ = os.Chmod(filepath.Dir(out), 0o755)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// input is the 100-byte contract input of the process driver's benchmarks.
var input = func() []byte {
	const head, tail = `{"run_id":"bench-1","service":"bench","trigger":{"kind":"manual"},"message":{"do":"echo","data":"`, `"}}`
	return []byte(head + strings.Repeat("x", 100-len(head)-len(tail)) + tail)
}()

func requireBins(t testing.TB) {
	t.Helper()
	sandboxtest.Require(t, bins.err == nil, fmt.Sprintf("build the benchmark's binaries: %v", bins.err))
}

// latencies reports p50, p99 and calls per second of the recorded calls.
func report(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[min(len(d)*99/100, len(d)-1)].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(len(d))/sum.Seconds(), "calls/s")
}

// startPlugin launches the echo plugin over net/rpc and returns its host
// side.
func startPlugin(t testing.TB) Echoer {
	t.Helper()
	e, stop, err := Start(filepath.Join(bins.dir, "echoplugin", "echoplugin"), VersionNetRPC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return e
}

// deployWorker deploys the echo worker on the process driver, warm.
func deployWorker(t testing.TB) sandbox.Deployment {
	t.Helper()
	sandboxtest.Require(t, os.Geteuid() == 0, "the process driver's sandbox needs root")
	d := process.New(process.Config{
		WorkDir:      filepath.Join(bins.dir, "work"),
		CgroupParent: "/andromeda-test",
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dep, err := d.Deploy(ctx, sandbox.Spec{Service: "bench-echo", Dir: filepath.Join(bins.dir, "echoworker"), Entry: "echoworker",
		Language: process.LangExec, Limits: sandbox.Limits{Concurrency: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return dep
}

// TestSameOutput checks that go-plugin, over net/rpc and over gRPC, and
// the exec worker answer the echo identically.
func TestSameOutput(t *testing.T) {
	requireBins(t)
	dep := deployWorker(t)
	exit, err := dep.Invoke(context.Background(), input)
	if err != nil || exit.Outcome != sandbox.OK {
		t.Fatalf("Invoke = %s %s, %v", exit.Outcome, exit.Detail, err)
	}
	for _, v := range []int{VersionNetRPC, VersionGRPC} {
		p, stop, err := Start(filepath.Join(bins.dir, "echoplugin", "echoplugin"), v)
		if err != nil {
			t.Fatalf("go-plugin version %d: %v", v, err)
		}
		got, err := p.Invoke(input)
		stop()
		if err != nil {
			t.Fatalf("go-plugin version %d: %v", v, err)
		}
		if string(got) != string(exit.Output) {
			t.Errorf("go-plugin version %d answered %s, the exec worker %s", v, got, exit.Output)
		}
	}
}

// BenchmarkEcho compares, in one run, a warm round trip of the same
// 100-byte JSON echo through go-plugin (net/rpc, its default) and through
// the process driver's exec worker (Deployment.Invoke: sandbox, runtime
// protocol, usage). x-goplugin is the exec worker's p50 over go-plugin's.
func BenchmarkEcho(b *testing.B) {
	requireBins(b)
	var pluginP50 float64
	b.Run("goplugin-netrpc", func(b *testing.B) {
		p := startPlugin(b)
		d := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			if _, err := p.Invoke(input); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		b.StopTimer()
		report(b, d)
		pluginP50 = float64(d[len(d)/2].Nanoseconds())
	})
	b.Run("process-exec", func(b *testing.B) {
		dep := deployWorker(b)
		ctx := context.Background()
		d := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			exit, err := dep.Invoke(ctx, input)
			if err != nil || exit.Outcome != sandbox.OK {
				b.Fatalf("Invoke = %s (%s), %v", exit.Outcome, exit.Detail, err)
			}
			d = append(d, time.Since(start))
		}
		b.StopTimer()
		report(b, d)
		if pluginP50 > 0 {
			b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/pluginP50, "x-goplugin")
		}
	})
}
