package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

var (
	execGuestOnce sync.Once
	execGuestDir  string
	execGuestErr  error
)

// guestServiceDir writes a server-mode service of lang's conformance
// guest (node, python, exec) with a manual trigger and a 30 s timeout.
func guestServiceDir(b testing.TB, name, lang string) string {
	b.Helper()
	dir := b.TempDir()
	var entry string
	switch lang {
	case "exec":
		execGuestOnce.Do(func() {
			if execGuestDir, execGuestErr = os.MkdirTemp("", "andromeda-exec-guest-"); execGuestErr == nil {
				execGuestErr = sandboxtest.GoBuild("github.com/andromeda-runner/andromeda/sandbox/process/testdata/guests/go",
					filepath.Join(execGuestDir, "guest"), []string{"CGO_ENABLED=0"})
			}
		})
		if errors.Is(execGuestErr, sandboxtest.ErrNoGo) {
			sandboxtest.Require(b, false, "building the exec guest needs the go command on PATH")
		}
		if execGuestErr != nil {
			b.Fatal(execGuestErr)
		}
		entry = "guest"
		copyFile(b, filepath.Join(execGuestDir, "guest"), filepath.Join(dir, entry))
		os.Chmod(filepath.Join(dir, entry), 0o755)
	case "node":
		entry = "index.js"
		copyFile(b, filepath.Join("..", "sandbox", "process", "testdata", "guests", "node", entry), filepath.Join(dir, entry))
	case "python":
		entry = "main.py"
		copyFile(b, filepath.Join("..", "sandbox", "process", "testdata", "guests", "python", entry), filepath.Join(dir, entry))
	}
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: process, language: " + lang + ", entry: " + entry + "}\nmode: server\n" +
		"triggers:\n  - {kind: manual}\nresources: {memory: 128Mi, timeout: 30s, pids: 32, concurrency: 2}\ncapabilities: {network: none}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkKillLatency measures a kill: from the cancel request to its
// answer, which comes once the run is recorded cancelled, for a guest
// that spins (it cannot honour the cancel: the process driver kills and
// replaces its worker after the grace, outside the measured time; the
// wasm driver closes the instance). Reported: p50 and p99 in ms. Each
// iteration also waits, untimed, half a second for the guest to start
// and for the worker to be replaced: run it with -benchtime 50x.
func BenchmarkKillLatency(b *testing.B) {
	ctx := context.Background()
	n := startNode(b)
	for _, lang := range []string{"wasm", "node", "python", "exec"} {
		b.Run(lang, func(b *testing.B) {
			name := "kill-" + lang
			var dir string
			if lang == "wasm" {
				dir = spinService(b, name, true)
			} else {
				enabled := false
				for _, d := range n.Node.Node(ctx).Drivers {
					enabled = enabled || d.Name == "process" && d.Enabled
				}
				sandboxtest.Require(b, enabled, "the process driver is disabled on this host")
				dir = guestServiceDir(b, name, lang)
			}
			if _, err := n.op.Submit(ctx, pack(b, dir)); err != nil {
				b.Fatal(err)
			}
			spin := api.FireRequest{Message: json.RawMessage(`{"do":"spin"}`)}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				started, finished, err := n.op.FireDetached(ctx, name, spin)
				if err != nil || finished != nil {
					b.Fatalf("fire: %+v, %v", finished, err)
				}
				// Untimed: let the guest get going, so the kill stops a
				// guest that runs rather than one waiting for a worker.
				b.StopTimer()
				time.Sleep(100 * time.Millisecond)
				b.StartTimer()
				t0 := time.Now()
				res, err := n.op.Cancel(ctx, started.ID)
				lat = append(lat, time.Since(t0))
				if err != nil || res.Recorded == nil || res.Recorded.Outcome != "cancelled" {
					b.Fatalf("cancel: %+v, %v", res, err)
				}
				// Untimed: the worker that did not honour the cancel is
				// killed after the grace (250 ms) and replaced.
				b.StopTimer()
				time.Sleep(400 * time.Millisecond)
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
		})
	}
}
