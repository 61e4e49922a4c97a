package wasm

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

// TestUsageHostFunction runs a reactor that reports counters through
// andromeda.usage (testdata/usage.wat checks the host's answers itself and
// traps on a wrong one): each run's usage holds its own sums and counts the
// refused reports, and says whose memory it reports, a fresh instance's
// (run) or a warm one's (worker).
func TestUsageHostFunction(t *testing.T) {
	d := newDriver(t, Config{})
	for _, c := range []struct {
		mode   sandbox.Mode
		scopes []string
	}{
		{sandbox.ModeServer, []string{sandbox.MemoryRun, sandbox.MemoryWorker}},
		{sandbox.ModeCommand, []string{sandbox.MemoryRun, sandbox.MemoryRun}},
	} {
		t.Run(string(c.mode), func(t *testing.T) {
			dep := deployFile(t, d, "testdata/usage.wasm", sandbox.Spec{Mode: c.mode, Limits: sandbox.Limits{Concurrency: 1}})
			for i, scope := range c.scopes {
				exit := invoke(t, dep, 5*time.Second, `{}`)
				u := exit.Usage
				if exit.Outcome != sandbox.OK || string(exit.Output) != `{"noop":"counted"}` {
					t.Fatalf("run %d: %s %q (%s)", i, exit.Outcome, exit.Output, exit.Detail)
				}
				if len(u.Counters) != 1 || u.Counters["rows"] != 1234 || u.CountersDropped != 2 {
					t.Errorf("run %d: counters %v, dropped %d; want rows 1234, dropped 2", i, u.Counters, u.CountersDropped)
				}
				if u.PeakMemory != pageSize || u.MemoryScope != scope {
					t.Errorf("run %d: peak memory %d, scope %q; want %d, %q", i, u.PeakMemory, u.MemoryScope, pageSize, scope)
				}
			}
		})
	}
}

// TestUsageImportType refuses a module that imports andromeda.usage with
// another type, and one importing a function the host module lacks.
func TestUsageImportType(t *testing.T) {
	d := newDriver(t, Config{})
	dep, err := d.Deploy(context.Background(), sandbox.Spec{Service: "bad", Dir: "testdata", Entry: "usagebad.wasm"})
	if err == nil {
		_ = dep.Stop(context.Background())
		t.Fatal("Deploy(usagebad.wasm) = nil error")
	}
	if !errors.Is(err, sandbox.ErrUnsupported) || !strings.Contains(err.Error(), "andromeda.usage with type (i32, i32, i32) -> (i32), want (i32, i32, f64) -> (i32)") {
		t.Errorf("Deploy(usagebad.wasm) = %v", err)
	}
}

// TestUsageGoSDK builds a Go service that calls the SDK's Usage as a
// reactor and runs it: the counters reach the run's usage, and the SDK
// reports the host's refusals as errors.
func TestUsageGoSDK(t *testing.T) {
	out := filepath.Join(t.TempDir(), "main.wasm")
	err := sandboxtest.GoBuild("github.com/andromeda-runner/andromeda/sandbox/wasm/testdata/usageguest", out, []string{"GOOS=wasip1", "GOARCH=wasm"}, "-buildmode=c-shared")
	sandboxtest.Require(t, !errors.Is(err, sandboxtest.ErrNoGo), "building the Go guest needs the go command on PATH")
	if err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, Config{CacheDir: guests.cache})
	dep := deployFile(t, d, out, sandbox.Spec{Mode: sandbox.ModeServer})
	exit := invoke(t, dep, 20*time.Second, `{"run_id":"r-1","service":"s","trigger":{"kind":"manual"},"state":{},"config":{}}`)
	refused := andromeda.ErrUsageRefused.Error()
	if want := `{"noop":"[<nil> <nil> ` + refused + " " + refused + `]"}`; exit.Outcome != sandbox.OK || strings.TrimSpace(string(exit.Output)) != want {
		t.Fatalf("Invoke = %s %s (%s), want output %s", exit.Outcome, exit.Output, exit.Detail, want)
	}
	// The negative amount never reaches the host: the SDK refuses it.
	if u := exit.Usage; len(u.Counters) != 1 || u.Counters["rows"] != 1234 || u.CountersDropped != 1 {
		t.Errorf("counters %v, dropped %d; want rows 1234, dropped 1", u.Counters, u.CountersDropped)
	}
}
