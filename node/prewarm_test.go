package node_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestPrewarmTick checks lifecycle.prewarm on a real node: the cron ticks
// of a command-mode Python service find their worker started (start_ns
// absent from their usage) while a manual fire of the same service waits
// for its own; with prewarm off the ticks wait like the fire; a dormant
// service is deployed before its first tick, not at it.
func TestPrewarmTick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		prewarm string
	}{{"on", "1500ms"}, {"off", "0s"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, func(c *node.Config) {
				c.Lifecycle.Prewarm = tc.prewarm
				c.Policy.Dormant.Services = []string{"sleepy"}
			})
			requireProcess(t, n)
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{
				"main.py": "def handle(input):\n    return {\"noop\": \"tick\"}\n",
				"andromeda.yaml": "name: ticker\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: command\n" +
					"triggers:\n  - {kind: manual}\n  - {kind: cron, every: 2s}\nresources: {memory: 64Mi, timeout: 20s}\ncapabilities: {network: none}\n",
			})
			if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
				t.Fatal(err)
			}
			fire, err := n.op.Fire(ctx, "ticker", json.RawMessage(`{}`))
			if err != nil || fire.Outcome != "noop" {
				t.Fatalf("fire: %+v, %v", fire, err)
			}
			if fire.Usage.StartNS <= 0 {
				t.Errorf("a manual fire of a command-mode service reports no start: %+v", fire.Usage)
			}
			var ticks []api.Run
			for deadline := time.Now().Add(20 * time.Second); len(ticks) < 3; {
				if time.Now().After(deadline) {
					t.Fatalf("%d cron runs within 20 s", len(ticks))
				}
				time.Sleep(200 * time.Millisecond)
				runs, err := n.op.Runs(ctx, "ticker", 20)
				if err != nil {
					t.Fatal(err)
				}
				ticks = ticks[:0]
				for _, r := range runs {
					if r.Trigger.Kind == "cron" {
						ticks = append(ticks, r)
					}
				}
			}
			zero := 0
			for _, r := range ticks {
				if r.Usage.StartNS == 0 {
					zero++
				}
			}
			switch {
			case tc.prewarm != "0s" && zero == 0:
				t.Errorf("prewarm on: every tick waited for its worker: %+v", ticks)
			case tc.prewarm == "0s" && zero != 0:
				t.Errorf("prewarm off: %d of %d ticks report no start", zero, len(ticks))
			}
			// A tick whose prewarm was late (a worker start slower than the
			// 1.5 s lead on a loaded machine) waits for the rest of it, which
			// may be longer than the cold fire took at a quieter moment: what
			// holds is that prewarmed ticks find their worker ready (above).
			for _, r := range ticks {
				if r.Outcome != "noop" {
					t.Errorf("tick run %+v", r)
				}
			}
		})
	}

	t.Run("dormant", func(t *testing.T) {
		t.Parallel()
		n := startNode(t, func(c *node.Config) { c.Policy.Dormant.Services = []string{"sleepy"} })
		dir := t.TempDir()
		copyFile(t, filepath.Join("..", "sandbox", "wasm", "echo.wasm"), filepath.Join(dir, "echo.wasm"))
		writeFiles(t, dir, map[string]string{"andromeda.yaml": "name: sleepy\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: echo.wasm}\nmode: command\n" +
			"triggers:\n  - {kind: cron, every: 3s}\n"})
		res, err := n.op.Submit(ctx, pack(t, dir))
		if err != nil || res.Service.Status != "dormant" {
			t.Fatalf("submit: %+v, %v", res.Service, err)
		}
		var deployedAt time.Time
		for deadline := time.Now().Add(10 * time.Second); deployedAt.IsZero(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the dormant service was not deployed within 10 s")
			}
			s, err := n.op.Service(ctx, "sleepy")
			if err != nil {
				t.Fatal(err)
			}
			if s.Status != "dormant" {
				deployedAt = time.Now()
			}
		}
		var runs []api.Run
		for deadline := time.Now().Add(10 * time.Second); len(runs) == 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no tick within 10 s")
			}
			if runs, err = n.op.Runs(ctx, "sleepy", 10); err != nil {
				t.Fatal(err)
			}
		}
		tick, err := time.Parse(time.RFC3339Nano, runs[len(runs)-1].Trigger.At)
		if err != nil {
			t.Fatal(err)
		}
		if !deployedAt.Before(tick) {
			t.Errorf("the dormant service was deployed at %v, not before its first tick at %v", deployedAt, tick)
		}
	})
}

// panicPrewarm is a driver whose deployments panic in Prewarm.
type panicPrewarm struct{ sandbox.Driver }

func (d panicPrewarm) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	dep, err := d.Driver.Deploy(ctx, spec)
	if err != nil {
		return nil, err
	}
	return prewarmPanics{dep}, nil
}

type prewarmPanics struct{ sandbox.Deployment }

func (prewarmPanics) Prewarm(context.Context, time.Duration) error { panic("prewarm exploded") }

// TestPrewarmPanic: a driver that panics in Prewarm does not take the node
// down: the ticks after it run and are recorded.
func TestPrewarmPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNodeWith(t, panicPrewarm{realWasm(t)}, func(c *node.Config) { c.Policy.Dormant.Services = []string{"sleepy"} })
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "sandbox", "wasm", "echo.wasm"), filepath.Join(dir, "echo.wasm"))
	writeFiles(t, dir, map[string]string{"andromeda.yaml": "name: sleepy\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: echo.wasm}\nmode: command\n" +
		"triggers:\n  - {kind: cron, every: 1s}\n"})
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		runs, err := n.op.Runs(ctx, "sleepy", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs within 15 s after prewarms that panicked", len(runs))
		}
	}
}
