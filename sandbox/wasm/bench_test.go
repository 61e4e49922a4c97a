package wasm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// benchInput is a 100-byte contract input asking the conformance guest to
// echo a string.
var benchInput = func() []byte {
	const head, tail = `{"run_id":"bench-1","service":"bench","trigger":{"kind":"manual"},"message":{"do":"echo","data":"`, `"}}`
	return []byte(head + strings.Repeat("x", 100-len(head)-len(tail)) + tail)
}()

// BenchmarkReactorInvoke compares a warm server-mode reactor invocation
// through Deployment.Invoke (driver) with the same exported functions called
// directly on wazero (bare: alloc, write the input, invoke, copy the output
// out), on a runtime configured as the driver's (close on context done,
// which compiles a check into every loop header and watches each call's
// context), for two guests:
//
//	(none)  the Go conformance guest echoing benchInput (JSON handling)
//	tiny    testdata/reactor.wasm, a few instructions: the per-call cost
//
// driver reports x-bare, its time over bare's. bare-no-close is bare
// without close on context done, for the cost of the time cap itself. Every
// call carries a context with a deadline, as the driver's do, and p50 and
// p99 are reported next to the mean.
func BenchmarkReactorInvoke(b *testing.B) {
	requireGuests(b)
	goBin := filepath.Join(goGuest("reactor"), "main.wasm")
	tinyBin := filepath.Join("testdata", "reactor.wasm")
	tinyInput := []byte(`{"noop":"bench"}`)
	var bare, tinyBare float64
	b.Run("bare", func(b *testing.B) { bare = benchBare(b, goBin, benchInput, true) })
	b.Run("driver", func(b *testing.B) { benchDriver(b, goBin, benchInput, bare) })
	b.Run("bare-no-close", func(b *testing.B) { benchBare(b, goBin, benchInput, false) })
	b.Run("tiny-bare", func(b *testing.B) { tinyBare = benchBare(b, tinyBin, tinyInput, true) })
	b.Run("tiny-driver", func(b *testing.B) { benchDriver(b, tinyBin, tinyInput, tinyBare) })
	b.Run("tiny-bare-no-close", func(b *testing.B) { benchBare(b, tinyBin, tinyInput, false) })
}

// benchDriver invokes the reactor at path through a server-mode deployment
// and reports its time over bare's (when bare ran).
func benchDriver(b *testing.B, path string, input []byte, bare float64) {
	d := newDriver(b, Config{CacheDir: guests.cache})
	dep := deployFile(b, d, path, sandbox.Spec{Mode: sandbox.ModeServer})
	if exit := invoke(b, dep, time.Minute, string(input)); exit.Outcome != sandbox.OK {
		b.Fatalf("echo = %s (%s)", exit.Outcome, exit.Detail)
	}
	ctx := context.Background()
	b.ReportAllocs()
	timed(b, func() {
		exit, err := dep.Invoke(ctx, input)
		if err != nil || exit.Outcome != sandbox.OK {
			b.Fatalf("Invoke = %s, %v", exit.Outcome, err)
		}
	})
	if bare > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/bare, "x-bare")
	}
}

// benchBare calls the reactor ABI of the module at path on wazero directly
// and returns ns/op.
func benchBare(b *testing.B, path string, input []byte, closeOnDone bool) float64 {
	bin, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	// A deadline far away, as the driver's calls carry one.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	cache, err := wazero.NewCompilationCacheWithDir(guests.cache)
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close(ctx)
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(closeOnDone))
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	compiled, err := rt.CompileModule(ctx, bin)
	if err != nil {
		b.Fatal(err)
	}
	// The guest sees what it sees in the driver: real clocks (the default
	// fake clock makes the Go runtime believe minutes pass and collect
	// garbage far more often).
	cfg := wazero.NewModuleConfig().WithStartFunctions("_initialize").
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(randReader)
	mod, err := rt.InstantiateModule(ctx, compiled, cfg)
	if err != nil {
		b.Fatal(err)
	}
	alloc, invoke, mem := mod.ExportedFunction(exportAlloc), mod.ExportedFunction(exportInvoke), mod.Memory()
	stack := make([]uint64, 2)
	call := func() []byte {
		stack[0] = uint64(len(input))
		if err := alloc.CallWithStack(ctx, stack); err != nil {
			b.Fatal(err)
		}
		ptr := uint32(stack[0])
		mem.Write(ptr, input)
		stack[0], stack[1] = uint64(ptr), uint64(len(input))
		if err := invoke.CallWithStack(ctx, stack); err != nil {
			b.Fatal(err)
		}
		out, _ := mem.Read(uint32(stack[0]>>32), uint32(stack[0]))
		return append([]byte(nil), out...)
	}
	if out := call(); len(out) == 0 || out[0] != '{' {
		b.Fatalf("bare invoke returned %q", out)
	}
	b.ReportAllocs()
	timed(b, func() { call() })
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}

// BenchmarkDeadlineWatch compares ways to watch one call's deadline, as the
// patched wazero (context.AfterFunc) and wazero v1.12 (a goroutine per call)
// do, and a timer: each op starts a watch on a context with a deadline an
// hour away and stops it, as a call that returns in time does.
func BenchmarkDeadlineWatch(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var fired atomic.Int64
	fire := func() { fired.Add(1) }
	b.Run("goroutine", func(b *testing.B) {
		b.ReportAllocs()
		timed(b, func() {
			done := make(chan struct{})
			go func() {
				select {
				case <-ctx.Done():
					fire()
				case <-done:
				}
			}()
			close(done)
		})
	})
	b.Run("context.AfterFunc", func(b *testing.B) {
		b.ReportAllocs()
		timed(b, func() {
			stop := context.AfterFunc(ctx, fire)
			stop()
		})
	})
	b.Run("time.AfterFunc", func(b *testing.B) {
		b.ReportAllocs()
		timed(b, func() {
			deadline, _ := ctx.Deadline()
			t := time.AfterFunc(time.Until(deadline), fire)
			t.Stop()
		})
	})
	if fired.Load() != 0 {
		b.Fatal("a watch fired")
	}
}

// BenchmarkTimeoutOvershoot measures how late a guest spinning in a loop
// that never calls the host is stopped after its deadline (outcome
// timeout), as p50 and p99 of the overshoot.
func BenchmarkTimeoutOvershoot(b *testing.B) {
	d := newDriver(b, Config{})
	dep := deployFile(b, d, "testdata/spin.wasm", sandbox.Spec{Mode: sandbox.ModeCommand})
	const deadline = 20 * time.Millisecond
	var over []time.Duration
	for b.Loop() {
		start := time.Now()
		exit := invoke(b, dep, deadline, "")
		over = append(over, time.Since(start)-deadline)
		if exit.Outcome != sandbox.Timeout {
			b.Fatalf("spin = %s (%s), want timeout", exit.Outcome, exit.Detail)
		}
	}
	slices.Sort(over)
	pct := func(p int) float64 { return float64(over[(len(over)-1)*p/100].Nanoseconds()) }
	b.ReportMetric(pct(50), "p50-over-ns")
	b.ReportMetric(pct(99), "p99-over-ns")
}

// BenchmarkCommandInvoke measures a command-mode invocation (instantiate,
// run to exit, collect stdout) of a tiny non-Go module (echo.wasm, 283
// bytes) and of the Go conformance guest (about 4.5 MB):
//
//	cold    a new driver without a cache: compile, then invoke
//	cached  a new driver on a warm on-disk cache (a restarted node): load, then invoke
//	warm    the module already compiled in a running driver
//
// p50 and p99 are reported next to the mean.
func BenchmarkCommandInvoke(b *testing.B) {
	type guest struct {
		name, path string
		input      []byte
	}
	guestList := []guest{{"tiny", "echo.wasm", []byte(`{"noop":"bench"}`)}}
	guests.once.Do(func() { guests.err = buildGuests(guests.dir) })
	if guests.err == nil {
		guestList = append(guestList, guest{"go", filepath.Join(goGuest("command"), "main.wasm"), benchInput})
	}
	for _, g := range guestList {
		dir, entry := filepath.Split(g.path)
		once := func(b *testing.B, d *Driver) {
			ctx := context.Background()
			dep, err := d.Deploy(ctx, sandbox.Spec{Service: "bench", Dir: dir, Entry: entry, Mode: sandbox.ModeCommand})
			if err != nil {
				b.Fatal(err)
			}
			if exit, err := dep.Invoke(ctx, g.input); err != nil || exit.Outcome != sandbox.OK {
				b.Fatalf("Invoke = %s, %v (%s)", exit.Outcome, err, exit.Detail)
			}
			_ = dep.Stop(ctx)
		}
		b.Run(g.name+"/cold", func(b *testing.B) {
			timed(b, func() {
				d := New(Config{})
				once(b, d)
				_ = d.Close()
			})
		})
		b.Run(g.name+"/cached", func(b *testing.B) {
			cache := b.TempDir()
			d := New(Config{CacheDir: cache})
			once(b, d) // fills the cache
			_ = d.Close()
			timed(b, func() {
				d := New(Config{CacheDir: cache})
				once(b, d)
				_ = d.Close()
			})
		})
		b.Run(g.name+"/warm", func(b *testing.B) {
			d := newDriver(b, Config{})
			dep := deployFile(b, d, g.path, sandbox.Spec{Mode: sandbox.ModeCommand})
			ctx := context.Background()
			timed(b, func() {
				exit, err := dep.Invoke(ctx, g.input)
				if err != nil || exit.Outcome != sandbox.OK {
					b.Fatalf("Invoke = %s, %v (%s)", exit.Outcome, err, exit.Detail)
				}
			})
		})
	}
}

// timed runs fn in a b.Loop and reports the p50 and p99 of its durations.
func timed(b *testing.B, fn func()) {
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		fn()
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	pct := func(p int) float64 { return float64(took[(len(took)-1)*p/100].Nanoseconds()) }
	b.ReportMetric(pct(50), "p50-ns")
	b.ReportMetric(pct(99), "p99-ns")
}
