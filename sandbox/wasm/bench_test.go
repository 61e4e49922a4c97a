package wasm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
// which compiles a check into every loop). driver reports x-bare, its time
// over bare's. bare-no-close is the same without that check, for the cost of
// timeouts themselves.
func BenchmarkReactorInvoke(b *testing.B) {
	requireGuests(b)
	bin, err := os.ReadFile(filepath.Join(goGuest("reactor"), "main.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	var bare float64
	b.Run("bare", func(b *testing.B) { bare = benchBare(b, bin, true) })
	b.Run("driver", func(b *testing.B) {
		d := newDriver(b, Config{CacheDir: guests.cache})
		dep := deployFile(b, d, filepath.Join(goGuest("reactor"), "main.wasm"), sandbox.Spec{Mode: sandbox.ModeServer})
		ctx := context.Background()
		if exit := invoke(b, dep, time.Minute, string(benchInput)); exit.Outcome != sandbox.OK {
			b.Fatalf("echo = %s (%s)", exit.Outcome, exit.Detail)
		}
		b.ReportAllocs()
		for b.Loop() {
			exit, err := dep.Invoke(ctx, benchInput)
			if err != nil || exit.Outcome != sandbox.OK {
				b.Fatalf("Invoke = %s, %v", exit.Outcome, err)
			}
		}
		if bare > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/bare, "x-bare")
		}
	})
	b.Run("bare-no-close", func(b *testing.B) { benchBare(b, bin, false) })
}

// benchBare calls the reactor ABI on wazero directly and returns ns/op.
func benchBare(b *testing.B, bin []byte, closeOnDone bool) float64 {
	ctx := context.Background()
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
		stack[0] = uint64(len(benchInput))
		if err := alloc.CallWithStack(ctx, stack); err != nil {
			b.Fatal(err)
		}
		ptr := uint32(stack[0])
		mem.Write(ptr, benchInput)
		stack[0], stack[1] = uint64(ptr), uint64(len(benchInput))
		if err := invoke.CallWithStack(ctx, stack); err != nil {
			b.Fatal(err)
		}
		out, _ := mem.Read(uint32(stack[0]>>32), uint32(stack[0]))
		return append([]byte(nil), out...)
	}
	if out := call(); !strings.Contains(string(out), `"topic":"echo"`) {
		b.Fatalf("bare invoke returned %q", out)
	}
	b.ReportAllocs()
	for b.Loop() {
		call()
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
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
