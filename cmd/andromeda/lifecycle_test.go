package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// lifecycleGuest is one service of the lifecycle test: the conformance
// guest (echo, noop, sleep forever, ...) on one driver.
type lifecycleGuest struct {
	name, mode, startMode string
	files                 func(t *testing.T, dir string) // writes the code
	runtime               string                         // the manifest's runtime line
}

var lifecycleBuild struct {
	once       sync.Once
	wasm, exec string
	err        error
}

// buildLifecycleGuests builds the Go conformance guest for wasip1 and as
// a native runtime-protocol worker, once per test binary.
func buildLifecycleGuests(t *testing.T) (wasm, exec string) {
	t.Helper()
	b := &lifecycleBuild
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "andromeda-lifecycle-")
		if err != nil {
			b.err = err
			return
		}
		b.wasm, b.exec = filepath.Join(dir, "main.wasm"), filepath.Join(dir, "guest")
		b.err = errors.Join(
			sandboxtest.GoBuild(sandboxtest.GoGuest, b.wasm, []string{"GOOS=wasip1", "GOARCH=wasm"}),
			sandboxtest.GoBuild("github.com/andromeda-runner/andromeda/sandbox/process/testdata/guests/go", b.exec, []string{"CGO_ENABLED=0"}),
		)
	})
	if errors.Is(b.err, sandboxtest.ErrNoGo) {
		sandboxtest.Require(t, false, "the go command builds the test's guests")
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.wasm, b.exec
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// lifecycleGuests are the conformance guest on every driver: wasm, and
// the process driver's exec, node and python, in both modes.
func lifecycleGuests(t *testing.T) []lifecycleGuest {
	wasm, exec := buildLifecycleGuests(t)
	guests := filepath.Join("..", "..", "sandbox", "process", "testdata", "guests")
	return []lifecycleGuest{
		{name: "lc-wasm", mode: "command", startMode: api.StartEmpty, runtime: "{driver: wasm, language: wasm, entry: main.wasm}",
			files: func(t *testing.T, dir string) { copyFile(t, wasm, filepath.Join(dir, "main.wasm"), 0o644) }},
		{name: "lc-exec", mode: "server", startMode: api.StartBlocking, runtime: "{driver: process, language: exec, entry: guest}",
			files: func(t *testing.T, dir string) { copyFile(t, exec, filepath.Join(dir, "guest"), 0o755) }},
		{name: "lc-node", mode: "server", startMode: api.StartBlocking, runtime: "{driver: process, language: node, entry: index.js}",
			files: func(t *testing.T, dir string) {
				copyFile(t, filepath.Join(guests, "node", "index.js"), filepath.Join(dir, "index.js"), 0o644)
			}},
		{name: "lc-python", mode: "command", startMode: api.StartEmpty, runtime: "{driver: process, language: python, entry: main.py}",
			files: func(t *testing.T, dir string) {
				copyFile(t, filepath.Join(guests, "python", "main.py"), filepath.Join(dir, "main.py"), 0o644)
			}},
	}
}

// writeGuest writes g's service directory: a manual trigger and an
// event trigger on its own topic.
func writeGuest(t *testing.T, g lifecycleGuest) string {
	dir := t.TempDir()
	g.files(t, dir)
	manifest := "name: " + g.name + "\nversion: 1.0.0\nruntime: " + g.runtime + "\nmode: " + g.mode + "\n" +
		"triggers:\n  - {kind: manual}\n  - {kind: event, topic: " + g.name + "}\n" +
		"resources: {memory: 128Mi, timeout: 30s, concurrency: 4, pids: 32}\ncapabilities: {network: none}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startNodeAt starts a node on the data dir, closed when t ends.
func startNodeAt(t *testing.T, data string) (*node.Node, map[string]string, *api.Client) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Data, cfg.Listen = data, "127.0.0.1:0"
	n, err := node.New(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	tok, err := node.OperatorToken(data)
	if err != nil {
		t.Fatal(err)
	}
	return n, map[string]string{"ANDROMEDA_ADDR": n.Addr(), "ANDROMEDA_DATA": data}, api.NewClient(n.Addr(), tok)
}

// cliJSON runs `andromeda ARGS --json` and decodes what it prints.
func cliJSON[T any](t *testing.T, env map[string]string, args ...string) T {
	t.Helper()
	var v T
	out, stderr, err := runCLI(t, env, append(args, "--json")...)
	if err != nil {
		t.Fatalf("andromeda %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("andromeda %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// conflict checks that err is a 409 whose message names want.
func conflict(t *testing.T, what string, err error, status int, want string) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != status || !strings.Contains(ae.Message, want) {
		t.Errorf("%s: %v; want %d naming %q", what, err, status, want)
	}
}

// TestLifecycleCLI drives a service on each driver (wasm; exec, node and
// python on the process driver) through its phases with the CLI: submit
// --no-start runs nothing (an event published then runs after start),
// deploy answers its start mode, start arms it,
// stop kills a run in flight after its grace and keeps the events
// published meanwhile for after start, a node restart restores every
// phase, rm keeps the run history and rm --purge deletes it. Bad
// transitions answer 4xx naming the phase.
func TestLifecycleCLI(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	n, env, c := startNodeAt(t, data)
	for _, d := range n.Node(ctx).Drivers {
		if d.Name == "process" {
			sandboxtest.Require(t, d.Enabled, "the process driver is disabled on this host: "+d.Reason)
		}
	}
	guests := lifecycleGuests(t)
	const grace = time.Second
	t.Run("drivers", func(t *testing.T) {
		for _, g := range guests {
			t.Run(g.name, func(t *testing.T) {
				t.Parallel()
				res := cliJSON[api.SubmitResult](t, env, "submit", "--no-start", writeGuest(t, g))
				if res.Service.Phase != api.PhaseDeployed {
					t.Fatalf("submit --no-start: phase %q, want deployed", res.Service.Phase)
				}
				_, err := c.Fire(ctx, g.name, json.RawMessage(`{"do":"noop","reason":"hi"}`))
				conflict(t, "fire before start", err, 409, "deployed but not started")
				if runs, err := c.Runs(ctx, g.name, 10); err != nil || len(runs) != 0 {
					t.Fatalf("runs before start: %d, %v", len(runs), err)
				}
				// Published before the first start: it waits for the start.
				if _, err := c.Publish(ctx, g.name, json.RawMessage(`{"do":"noop","reason":"before start"}`)); err != nil {
					t.Fatal(err)
				}

				dr := cliJSON[api.DeployResult](t, env, "deploy", g.name)
				if dr.StartMode != g.startMode || dr.Valid.Ok == nil || dr.Valid.Err != nil || dr.Volumes == nil || dr.Service.Phase != api.PhaseDeployed {
					t.Fatalf("deploy = %+v", dr)
				}
				if s := cliJSON[api.Service](t, env, "start", g.name); s.Phase != api.PhaseStarted {
					t.Fatalf("start: phase %q", s.Phase)
				}
				_, err = c.Start(ctx, g.name)
				conflict(t, "start a started service", err, 409, "already started")
				_, err = c.Deploy(ctx, g.name)
				conflict(t, "deploy a started service", err, 409, "is started")
				if r := cliJSON[api.Run](t, env, "fire", g.name, "--input", `{"do":"noop","reason":"one"}`); r.Outcome != "noop" || r.Noop != "one" {
					t.Fatalf("fire: %+v", r)
				}
				waitRun(t, c, g.name, "before start")

				// A run that never ends is in flight when the stop comes:
				// it is killed after the grace, recorded, and the stop
				// answers then.
				slept := make(chan api.Run, 1)
				go func() {
					r, err := c.Fire(ctx, g.name, json.RawMessage(`{"do":"sleep"}`))
					if err != nil {
						t.Errorf("the sleeping fire: %v", err)
					}
					slept <- r
				}()
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					fl, err := c.Running(ctx, g.name)
					if err != nil {
						t.Fatal(err)
					}
					if len(fl) == 1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the sleeping fire did not start its run within 20 s")
					}
				}
				time.Sleep(200 * time.Millisecond) // the fire reaches the guest
				start := time.Now()
				if s := cliJSON[api.Service](t, env, "stop", g.name, "--grace", grace.String()); s.Phase != api.PhaseStopped {
					t.Fatalf("stop: phase %q", s.Phase)
				}
				took := time.Since(start)
				if took < grace/2 || took > grace+3*time.Second {
					t.Errorf("stop took %s with a run in flight and a grace of %s", took, grace)
				}
				select {
				case r := <-slept:
					if r.Outcome != "cancelled" || !strings.Contains(r.Error, "stop after its grace") || r.ID == "" {
						t.Errorf("the run in flight at stop: %+v, want cancelled by the stop", r)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the run in flight was not over when stop answered")
				}
				_, err = c.Fire(ctx, g.name, json.RawMessage(`{"do":"noop","reason":"x"}`))
				conflict(t, "fire a stopped service", err, 409, "is stopped")
				_, err = c.Stop(ctx, g.name, 0)
				conflict(t, "stop a stopped service", err, 409, "already stopped")
				// Published while stopped: it waits for the start.
				if _, err := c.Publish(ctx, g.name, json.RawMessage(`{"do":"noop","reason":"while stopped"}`)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
				if s := cliJSON[api.Service](t, env, "start", g.name); s.Phase != api.PhaseStarted {
					t.Fatalf("start again: phase %q", s.Phase)
				}
				if r := cliJSON[api.Run](t, env, "fire", g.name, "--input", `{"do":"noop","reason":"two"}`); r.Outcome != "noop" || r.Noop != "two" {
					t.Fatalf("fire after start: %+v", r)
				}
				waitRun(t, c, g.name, "while stopped")
			})
		}
	})
	if t.Failed() {
		return
	}

	// Leave each service in a different phase and restart the node.
	want := map[string]string{"lc-wasm": api.PhaseStarted, "lc-exec": api.PhaseStopped, "lc-node": api.PhaseDeployed, "lc-python": api.PhaseStarted}
	cliJSON[api.Service](t, env, "stop", "lc-exec", "--grace", "1s")
	cliJSON[api.Service](t, env, "stop", "lc-node")
	cliJSON[api.DeployResult](t, env, "deploy", "lc-node")
	n.Close()
	n, env, c = startNodeAt(t, data)
	table, _, err := runCLI(t, env, "ls")
	if err != nil {
		t.Fatal(err)
	}
	for name, phase := range want {
		if !regexp.MustCompile(`(?m)^` + name + `\s.*\s` + phase + `\s`).MatchString(table) {
			t.Errorf("ls does not show %s %s:\n%s", name, phase, table)
		}
		s := cliJSON[api.Service](t, env, "inspect", name)
		if s.Phase != phase {
			t.Errorf("%s after a restart: phase %q, want %q", name, s.Phase, phase)
		}
		_, err := c.Fire(ctx, name, json.RawMessage(`{"do":"noop","reason":"after restart"}`))
		if phase == api.PhaseStarted && err != nil {
			t.Errorf("fire %s after a restart: %v", name, err)
		}
		if phase != api.PhaseStarted {
			conflict(t, "fire "+name+" after a restart", err, 409, phase)
		}
	}

	// rm keeps the history, rm --purge deletes it.
	before := len(cliJSON[[]api.Run](t, env, "runs", "lc-wasm"))
	if before < 3 {
		t.Fatalf("lc-wasm has %d runs", before)
	}
	cliJSON[map[string]any](t, env, "rm", "lc-wasm")
	if after := len(cliJSON[[]api.Run](t, env, "runs", "lc-wasm")); after != before {
		t.Errorf("runs of a removed service: %d, want %d", after, before)
	}
	_, err = c.Start(ctx, "lc-wasm")
	conflict(t, "start a removed service", err, 404, "lc-wasm")
	_, err = c.Stop(ctx, "lc-wasm", 0)
	conflict(t, "stop a removed service", err, 404, "lc-wasm")
	cliJSON[map[string]any](t, env, "rm", "--purge", "lc-exec")
	if after := len(cliJSON[[]api.Run](t, env, "runs", "lc-exec")); after != 0 {
		t.Errorf("runs of a purged service: %d, want 0", after)
	}
	if _, err := os.Stat(filepath.Join(data, "services", "lc-exec")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("files of a removed service: %v", err)
	}
}

// waitRun waits for a run of service whose noop reason is reason.
func waitRun(t *testing.T, c *api.Client, service, reason string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		runs, err := c.Runs(context.Background(), service, 20)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			if r.Noop == reason {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s: no run %q", service, reason)
}
