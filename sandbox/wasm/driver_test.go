package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

var update = flag.Bool("update", false, "reassemble the .wasm files from their .wat sources with wat2wasm")

// newDriver returns a driver closed when t ends.
func newDriver(t testing.TB, cfg Config) *Driver {
	t.Helper()
	d := New(cfg)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return d
}

// deployFile deploys the module at path with spec's other fields.
func deployFile(t testing.TB, d *Driver, path string, spec sandbox.Spec) *deployment {
	t.Helper()
	spec.Dir, spec.Entry = filepath.Split(path)
	if spec.Service == "" {
		spec.Service = "test"
	}
	dep, err := d.Deploy(context.Background(), spec)
	if err != nil {
		t.Fatalf("Deploy(%s) = %v", path, err)
	}
	t.Cleanup(func() { _ = dep.Stop(context.Background()) })
	return dep.(*deployment)
}

func invoke(t testing.TB, dep sandbox.Deployment, timeout time.Duration, input string) sandbox.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	exit, err := dep.Invoke(ctx, []byte(input))
	if err != nil {
		t.Fatalf("Invoke(%.100s) = %v", input, err)
	}
	return exit
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string // substring of the error; empty for valid
	}{
		{"zero", Config{}, ""},
		{"defaults", DefaultConfig(), ""},
		{"memory below a page", Config{Memory: 1000}, "memory"},
		{"negative timeout", Config{Timeout: -time.Second}, "timeout"},
		{"negative concurrency", Config{Concurrency: -1}, "concurrency"},
		{"negative output", Config{MaxOutput: -1}, "max_output"},
		{"negative memory budget", Config{MemoryBudget: -1}, "memory_budget: must not be negative"},
		{"memory budget below memory", Config{Memory: 128 << 20, MemoryBudget: 64 << 20}, "memory_budget: must be at least memory"},
		{"memory over the default budget", Config{Memory: 2 << 30}, "memory_budget: must be at least memory"},
		{"memory within an explicit budget", Config{Memory: 2 << 30, MemoryBudget: 4 << 30}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
				t.Errorf("Validate() = %v, want error containing %q", err, c.want)
			}
		})
	}
	if err := New(Config{Memory: 1}).Test(context.Background()); err == nil {
		t.Error("Test() of a driver with an invalid config = nil, want an error")
	}
}

func TestSelfTestAndOffer(t *testing.T) {
	d := newDriver(t, Config{})
	if err := d.Test(context.Background()); err != nil {
		t.Fatalf("Test() = %v", err)
	}
	o := d.Offer()
	if o.Driver != "wasm" || !strings.HasPrefix(o.Languages["wasm"], "wazero ") {
		t.Errorf("Offer() = %+v, want driver wasm and a wazero version (unknown in test binaries, which carry no dependency list)", o)
	}
	for _, layer := range []string{"no-fs", "no-network", "no-env", "memory-cap", "timeout"} {
		if !o.Isolation[layer] {
			t.Errorf("Offer().Isolation[%q] = false, want true", layer)
		}
	}
	if !slices.Equal(o.Modes, []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand}) {
		t.Errorf("Offer().Modes = %v", o.Modes)
	}
}

// TestWATSources checks that every committed .wasm is its .wat source
// assembled; -update reassembles them.
func TestWATSources(t *testing.T) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	sandboxtest.Require(t, err == nil, "checking the .wasm files against their .wat sources needs wat2wasm (Debian package wabt)")
	sources, _ := filepath.Glob("testdata/*.wat")
	sources = append(sources, "echo.wat")
	for _, src := range sources {
		bin := strings.TrimSuffix(src, ".wat") + ".wasm"
		out := bin
		if !*update {
			out = filepath.Join(t.TempDir(), filepath.Base(bin))
		}
		if b, err := exec.Command(wat2wasm, src, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", src, err, b)
		}
		want, _ := os.ReadFile(out)
		got, err := os.ReadFile(bin)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not %s assembled (%v); run go test -run TestWATSources -update", bin, src, err)
		}
	}
}

// TestNonGoGuests runs the hand-written modules: a command and a reactor in
// both modes, a balloon and a spinner.
func TestNonGoGuests(t *testing.T) {
	d := newDriver(t, Config{})
	const in = `{"noop":"non-Go guest"}`
	for _, c := range []struct {
		module string
		mode   sandbox.Mode
	}{
		{"echo.wasm", sandbox.ModeCommand},
		{"echo.wasm", sandbox.ModeServer},
		{"testdata/reactor.wasm", sandbox.ModeCommand},
		{"testdata/reactor.wasm", sandbox.ModeServer},
	} {
		t.Run(c.module+"/"+string(c.mode), func(t *testing.T) {
			dep := deployFile(t, d, c.module, sandbox.Spec{Mode: c.mode})
			for range 3 {
				exit := invoke(t, dep, 5*time.Second, in)
				if exit.Outcome != sandbox.OK || string(exit.Output) != in {
					t.Fatalf("Invoke = %s %q (%s), want ok %q", exit.Outcome, exit.Output, exit.Detail, in)
				}
				if exit.Usage.Wall <= 0 || exit.Usage.PeakMemory != pageSize {
					t.Errorf("usage = %+v, want wall > 0 and peak memory one page", exit.Usage)
				}
			}
			wantCreated := int64(3)
			if dep.pooled {
				wantCreated = 1
			}
			if got := dep.created.Load(); got != wantCreated {
				t.Errorf("instances created for 3 invocations = %d, want %d", got, wantCreated)
			}
			r, err := sandbox.CallRaw(context.Background(), dep, []byte(`{"noop":""}`), time.Second)
			if err != nil || r.Outcome != sandbox.Error {
				t.Errorf("echo of an output without reason = %s, %v; want the contract error", r.Outcome, err)
			}
		})
	}
	t.Run("balloon", func(t *testing.T) {
		const limit = 4<<20 + 1000 // rounds down to 64 pages
		dep := deployFile(t, d, "testdata/balloon.wasm", sandbox.Spec{Mode: sandbox.ModeCommand, Limits: sandbox.Limits{Memory: limit}})
		if dep.memLimit != 4<<20 {
			t.Errorf("memory limit of %d bytes = %d, want %d (whole pages)", limit, dep.memLimit, 4<<20)
		}
		exit := invoke(t, dep, 5*time.Second, "")
		if exit.Outcome != sandbox.OOM {
			t.Fatalf("balloon = %s (%s), want oom", exit.Outcome, exit.Detail)
		}
		if exit.Usage.PeakMemory > 4<<20 || exit.Usage.PeakMemory < 3<<20 {
			t.Errorf("peak memory = %d, want just under 4 MiB", exit.Usage.PeakMemory)
		}
	})
	t.Run("spin", func(t *testing.T) {
		dep := deployFile(t, d, "testdata/spin.wasm", sandbox.Spec{Mode: sandbox.ModeCommand})
		const timeout = 200 * time.Millisecond
		start := time.Now()
		exit := invoke(t, dep, timeout, "")
		if took := time.Since(start); exit.Outcome != sandbox.Timeout || took > timeout+100*time.Millisecond {
			t.Errorf("spin = %s after %v, want timeout within %v", exit.Outcome, took, timeout+100*time.Millisecond)
		}
	})
}

func TestDeployRejects(t *testing.T) {
	d := newDriver(t, Config{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.js"), []byte("console.log(1)"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name        string
		spec        sandbox.Spec
		unsupported bool
		want        string
	}{
		{"missing file", sandbox.Spec{Dir: dir, Entry: "main.wasm"}, false, "no such file"},
		{"entry outside the directory", sandbox.Spec{Dir: dir, Entry: "../main.wasm"}, false, "inside the service directory"},
		{"absolute entry", sandbox.Spec{Dir: dir, Entry: "/etc/passwd"}, false, "inside the service directory"},
		{"not wasm", sandbox.Spec{Dir: dir, Entry: "main.js"}, true, "not a WebAssembly binary"},
		{"host import", sandbox.Spec{Dir: "testdata", Entry: "hostimport.wasm"}, true, "env.open_socket"},
		{"neither shape", sandbox.Spec{Dir: "testdata", Entry: "library.wasm"}, true, "neither _start"},
		{"unknown mode", sandbox.Spec{Dir: ".", Entry: "echo.wasm", Mode: "daemon"}, true, "mode"},
		{"memory below a page", sandbox.Spec{Dir: ".", Entry: "echo.wasm", Limits: sandbox.Limits{Memory: 1000}}, false, "below one 64 KiB page"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.spec.Service = "reject"
			dep, err := d.Deploy(context.Background(), c.spec)
			if err == nil {
				_ = dep.Stop(context.Background())
				t.Fatalf("Deploy(%+v) = nil error", c.spec)
			}
			if errors.Is(err, sandbox.ErrUnsupported) != c.unsupported || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "deploy reject: ") {
				t.Errorf("Deploy() = %v, want an error starting %q containing %q (unsupported: %v)", err, "deploy reject: ", c.want, c.unsupported)
			}
		})
	}
}

// TestCompilationCacheAcrossRuntimes deploys a module with one driver and
// then with a second driver (a restarted node) on the same cache directory:
// the second must read the cached entry, not compile and write it again.
func TestCompilationCacheAcrossRuntimes(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	entries := func() map[string]os.FileInfo {
		m := map[string]os.FileInfo{}
		_ = filepath.Walk(cache, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				m[p] = fi
			}
			return nil
		})
		return m
	}
	run := func() {
		d := New(Config{CacheDir: cache})
		defer d.Close()
		dep := deployFile(t, d, "echo.wasm", sandbox.Spec{Mode: sandbox.ModeCommand})
		if exit := invoke(t, dep, 5*time.Second, `{"noop":"cached"}`); exit.Outcome != sandbox.OK {
			t.Fatalf("Invoke = %s (%s)", exit.Outcome, exit.Detail)
		}
		_ = dep.Stop(context.Background())
	}
	run()
	first := entries()
	if len(first) == 0 {
		t.Fatalf("no compiled module cached in %s", cache)
	}
	run()
	second := entries()
	if len(second) != len(first) {
		t.Errorf("cache has %d files after a restart, want %d", len(second), len(first))
	}
	for p, fi := range first {
		if fi2, ok := second[p]; !ok || !os.SameFile(fi, fi2) || !fi.ModTime().Equal(fi2.ModTime()) {
			t.Errorf("cache entry %s was rewritten after a restart: the module was compiled again", p)
		}
	}
}

// TestGuestEnvironment checks what a guest sees of the host: one argument,
// the service name, and no environment.
func TestGuestEnvironment(t *testing.T) {
	requireGuests(t)
	t.Setenv("ANDROMEDA_WASM_SECRET", "do-not-leak")
	d := newDriver(t, Config{CacheDir: guests.cache})
	for _, shape := range []string{"command", "reactor"} {
		t.Run(shape, func(t *testing.T) {
			dep := deployFile(t, d, filepath.Join(goGuest(shape), "main.wasm"), sandbox.Spec{Service: "price-watch"})
			exit := invoke(t, dep, 10*time.Second, `{"message":{"do":"env"}}`)
			var out struct {
				Emit []struct {
					Message struct{ Env, Args []string }
				}
			}
			if err := json.Unmarshal(exit.Output, &out); err != nil || len(out.Emit) != 1 {
				t.Fatalf("env output %s (%s): %v", exit.Output, exit.Detail, err)
			}
			got := out.Emit[0].Message
			if len(got.Env) != 0 || !slices.Equal(got.Args, []string{"price-watch"}) {
				t.Errorf("guest sees env %q and args %q, want no env and args [price-watch]", got.Env, got.Args)
			}
		})
	}
}

// TestPool checks that a server-mode reactor reuses warm instances, keeps at
// most Limits.Concurrency of them, and replaces one that crashed.
func TestPool(t *testing.T) {
	requireGuests(t)
	d := newDriver(t, Config{CacheDir: guests.cache})
	dep := deployFile(t, d, filepath.Join(goGuest("reactor"), "main.wasm"), sandbox.Spec{Mode: sandbox.ModeServer, Limits: sandbox.Limits{Concurrency: 2}})
	echo := `{"message":{"do":"echo","data":1}}`
	for range 5 {
		if exit := invoke(t, dep, 10*time.Second, echo); exit.Outcome != sandbox.OK {
			t.Fatalf("echo = %s (%s)", exit.Outcome, exit.Detail)
		}
	}
	if got := dep.created.Load(); got != 1 {
		t.Errorf("instances created for 5 sequential invocations = %d, want 1", got)
	}
	if exit := invoke(t, dep, 10*time.Second, `{"message":{"do":"panic"}}`); exit.Outcome != sandbox.Crashed {
		t.Fatalf("panic = %s, want crashed", exit.Outcome)
	}
	if exit := invoke(t, dep, 10*time.Second, echo); exit.Outcome != sandbox.OK {
		t.Fatalf("echo after a crash = %s (%s)", exit.Outcome, exit.Detail)
	}
	if got := dep.created.Load(); got != 2 {
		t.Errorf("instances created after a crash = %d, want 2 (the crashed one replaced)", got)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { invoke(t, dep, 10*time.Second, echo) })
	}
	wg.Wait()
	dep.mu.Lock()
	idle := len(dep.idle)
	dep.mu.Unlock()
	if idle > 2 {
		t.Errorf("idle instances after 6 concurrent invocations = %d, want at most Limits.Concurrency 2", idle)
	}
}

// TestInvokeContext covers a deadline that passed before the call, and a
// caller cancelling a sleeping guest.
func TestInvokeContext(t *testing.T) {
	requireGuests(t)
	d := newDriver(t, Config{CacheDir: guests.cache})
	dep := deployFile(t, d, filepath.Join(goGuest("reactor"), "main.wasm"), sandbox.Spec{Mode: sandbox.ModeServer})

	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	exit, err := dep.Invoke(ctx, []byte(`{"message":{"do":"echo","data":1}}`))
	if err != nil || exit.Outcome != sandbox.Timeout {
		t.Errorf("Invoke past its deadline = %s, %v; want timeout", exit.Outcome, err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = dep.Invoke(ctx, []byte(`{"message":{"do":"sleep"}}`))
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Errorf("Invoke cancelled after 100ms = %v after %v, want context.Canceled promptly", err, time.Since(start))
	}
	if exit := invoke(t, dep, 10*time.Second, `{"message":{"do":"echo","data":2}}`); exit.Outcome != sandbox.OK {
		t.Errorf("echo after a cancelled invocation = %s (%s)", exit.Outcome, exit.Detail)
	}
}

func TestOutputLimit(t *testing.T) {
	d := newDriver(t, Config{MaxOutput: 1024})
	big := `{"noop":"` + strings.Repeat("x", 2000) + `"}`
	for _, module := range []string{"echo.wasm", "testdata/reactor.wasm"} {
		dep := deployFile(t, d, module, sandbox.Spec{Mode: sandbox.ModeServer})
		exit := invoke(t, dep, 5*time.Second, big)
		if exit.Outcome != sandbox.Crashed || !strings.Contains(exit.Detail, "exceeds the limit of 1024 bytes") {
			t.Errorf("%s: 2 KiB of output with a 1 KiB limit = %s (%s), want crashed", module, exit.Outcome, exit.Detail)
		}
	}
}

// TestClose checks that closing the driver stops its deployments.
func TestClose(t *testing.T) {
	d := New(Config{})
	dep := deployFile(t, d, "echo.wasm", sandbox.Spec{Mode: sandbox.ModeCommand})
	if err := d.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	if _, err := dep.Invoke(context.Background(), []byte(`{"noop":"x"}`)); !errors.Is(err, sandbox.ErrStopped) {
		t.Errorf("Invoke after the driver closed = %v, want %v", err, sandbox.ErrStopped)
	}
	if _, err := d.Deploy(context.Background(), sandbox.Spec{Dir: ".", Entry: "echo.wasm"}); err == nil {
		t.Error("Deploy after Close = nil error")
	}
}

func TestHeadTail(t *testing.T) {
	for _, c := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"short", []string{"a", "b\n"}, "ab"},
		{"exact", []string{"12345678"}, "12345678"},
		{"cut in one write", []string{"0123456789abc"}, "01\n...\n789abc"},
		{"cut across writes", []string{"01234", "56789", "abc"}, "01\n...\n789abc"},
		{"cut inside a rune", []string{"xxxxxx", "é12345"}, "xx\n...\n12345"},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := headTail{max: 8}
			for _, w := range c.writes {
				if n, err := log.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := log.String(); got != c.want {
				t.Errorf("String() = %q, want %q", got, c.want)
			}
			log.reset()
			if !log.empty() || log.String() != "" {
				t.Errorf("after reset, String() = %q", log.String())
			}
		})
	}
}
