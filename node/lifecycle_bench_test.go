package node_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkStop measures stop-to-stopped through the API (request, the
// triggers disarmed, the runs in flight given their grace and recorded,
// the deployment released, the record written, the answer), per driver:
// idle, a service with nothing running; inflight, one whose run spins
// forever when the stop comes, killed after a 100 ms grace. Each stop is
// followed by an untimed start (which deploys again).
func BenchmarkStop(b *testing.B) {
	ctx := context.Background()
	n := startNode(b)
	for _, name := range []string{"echo", "spin"} {
		dir := b.TempDir()
		src := filepath.Join("..", "sandbox", "wasm", "echo.wasm")
		if name == "spin" {
			src = filepath.Join("..", "sandbox", "wasm", "testdata", "spin.wasm")
		}
		copyFile(b, src, filepath.Join(dir, name+".wasm"))
		m := "name: bench-" + name + "\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: " + name + ".wasm}\nmode: command\n" +
			"triggers:\n  - {kind: manual}\nresources: {memory: 16Mi, timeout: 30s, concurrency: 4}\ncapabilities: {network: none}\n"
		if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
			b.Fatal(err)
		}
		if _, err := n.op.Submit(ctx, pack(b, dir)); err != nil {
			b.Fatal(err)
		}
	}
	const grace = 100 * time.Millisecond
	bench := func(b *testing.B, service, input string, inflight bool) {
		lat := make([]time.Duration, 0, b.N)
		for range b.N {
			done := make(chan struct{})
			if inflight {
				go func() {
					defer close(done)
					n.op.Fire(ctx, service, json.RawMessage(input))
				}()
				time.Sleep(100 * time.Millisecond) // the run is in the guest
			} else {
				close(done)
			}
			start := time.Now()
			s, err := n.op.Stop(ctx, service, grace)
			if err != nil || s.Phase != "stopped" {
				b.Fatalf("stop: %+v, %v", s, err)
			}
			lat = append(lat, time.Since(start))
			b.StopTimer()
			<-done
			if _, err := n.op.Start(ctx, service); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		reportPercentiles(b, lat)
	}
	b.Run("wasm/idle", func(b *testing.B) { bench(b, "bench-echo", `{}`, false) })
	b.Run("wasm/inflight", func(b *testing.B) { bench(b, "bench-spin", `{}`, true) })
	// The process driver, server mode: a stop shuts the warm workers down
	// (idle), or kills the one spinning after the grace (inflight).
	for _, lang := range []string{"node", "python", "exec"} {
		name := "bench-stop-" + lang
		if _, err := n.op.Submit(ctx, pack(b, guestServiceDir(b, name, lang))); err != nil {
			b.Fatal(err)
		}
		b.Run(lang+"/idle", func(b *testing.B) { bench(b, name, `{"do":"noop","reason":"x"}`, false) })
		b.Run(lang+"/inflight", func(b *testing.B) { bench(b, name, `{"do":"spin"}`, true) })
	}
}
