package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/node"
)

// cronManifest is one of the cron row's services: the answer reactor on a
// one-second tick.
const cronManifest = `name: %s
version: 1.0.0
runtime: {driver: wasm, language: wasm, entry: answer.wasm}
mode: server
triggers:
  - {kind: cron, every: 1s}
resources: {memory: 1Mi, timeout: 5s, concurrency: 1}
capabilities: {network: none}
`

// cronLag submits *cronServices services ticking every second to a node of
// their own, lets them tick for the row's duration (at least 3 s), and
// reports each tick's lag, its run's start minus its scheduled time, from
// the recorded runs, and the node's CPU and the memory each idle service
// holds in the note.
func cronLag(ctx context.Context, e *env) ([]time.Duration, float64, string, error) {
	var b benchNode
	n := *cronServices
	// Every service keeps its warm instance: the wasm memory budget holds
	// one reservation (the 1 MiB limit) per service beside the default's
	// 1 GiB. Under the default alone, past about 1,000 such services each
	// tick closes the instance idle longest and instantiates its own.
	budget := fmt.Sprintf("%dMi", 1024+n)
	if err := b.open(ctx, e, "cron", func(c *node.Config) { c.Wasm.MemoryBudget = budget }); err != nil {
		return nil, 0, "", err
	}
	defer b.n.Close()
	before := heapInuse()
	wasmBin, err := os.ReadFile("testdata/answer.wasm")
	if err != nil {
		return nil, 0, "", err
	}
	for i := range n {
		dir := filepath.Join(e.dir, "cron", fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, 0, "", err
		}
		if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(fmt.Sprintf(cronManifest, fmt.Sprintf("tick-%05d", i))), 0o644); err != nil {
			return nil, 0, "", err
		}
		if err := os.WriteFile(filepath.Join(dir, "answer.wasm"), wasmBin, 0o644); err != nil {
			return nil, 0, "", err
		}
		tgz, err := archive.Pack(dir)
		if err != nil {
			return nil, 0, "", err
		}
		if _, err := b.client.Submit(ctx, tgz); err != nil {
			return nil, 0, "", fmt.Errorf("submit tick-%05d: %w", i, err)
		}
	}
	perService := (heapInuse() - before) / uint64(n)
	window := max(*duration, 3*time.Second)
	time.Sleep(1500 * time.Millisecond) // every service has ticked once
	stopProfile, err := profileWindow()
	if err != nil {
		return nil, 0, "", err
	}
	start := time.Now()
	cpu0 := cpuTime()
	time.Sleep(window)
	cpu := cpuTime() - cpu0
	stopProfile()
	until := time.Now()
	var lat []time.Duration
	outcomes := map[string]int{}
	cursor := ""
	for {
		page, err := b.client.ListRuns(ctx, "", api.RunQuery{Limit: 1000, Cursor: cursor, Since: start, Until: until})
		if err != nil {
			return nil, 0, "", err
		}
		for _, r := range page.Runs {
			if r.Trigger.Kind != "cron" || !strings.HasPrefix(r.Service, "tick-") {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, r.Trigger.At)
			if err != nil {
				return nil, 0, "", fmt.Errorf("run %s: trigger.at %q: %w", r.ID, r.Trigger.At, err)
			}
			lat = append(lat, r.Start.Sub(at))
			outcomes[r.Outcome]++
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	want := float64(n) * window.Seconds()
	note := fmt.Sprintf("%d services every 1 s for %s: %d runs recorded (%.0f expected), outcomes %v; node CPU %.0f%% of one core; %.1f KiB of heap per idle service (wasm memory budget %s)",
		n, window, len(lat), want, outcomes, 100*cpu.Seconds()/window.Seconds(), float64(perService)/1024, budget)
	return lat, float64(len(lat)) / window.Seconds(), note, nil
}

// profileWindow starts a CPU profile of the cron row's window when
// -cronprofile names a file, and returns what stops it and writes the
// heap's profile beside it (FILE.heap).
func profileWindow() (func(), error) {
	if *cronProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(*cronProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if h, err := os.Create(*cronProfile + ".heap"); err == nil {
			pprof.Lookup("heap").WriteTo(h, 0)
			h.Close()
		}
	}, nil
}

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapInuse is the Go heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
