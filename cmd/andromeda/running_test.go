package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// The conformance guests, built once per test binary: the Go guest as a
// wasip1 command, and the process driver's exec guest; the Node.js and
// Python guests are copied as they are.
var (
	guestsOnce sync.Once
	guestsDir  string
	guestsErr  error
)

func conformanceGuests(t *testing.T) string {
	t.Helper()
	guestsOnce.Do(func() {
		if guestsDir, guestsErr = os.MkdirTemp("", "andromeda-cli-guests-"); guestsErr != nil {
			return
		}
		const pkg = "github.com/andromeda-runner/andromeda/sandbox/sandboxtest/guests/go"
		if guestsErr = sandboxtest.GoBuild(pkg, filepath.Join(guestsDir, "main.wasm"), []string{"GOOS=wasip1", "GOARCH=wasm"}); guestsErr != nil {
			return
		}
		// The exec guest speaks the runtime protocol through runtimes/go.
		const exec = "github.com/andromeda-runner/andromeda/sandbox/process/testdata/guests/go"
		guestsErr = sandboxtest.GoBuild(exec, filepath.Join(guestsDir, "guest"), []string{"CGO_ENABLED=0"})
	})
	if errors.Is(guestsErr, sandboxtest.ErrNoGo) {
		sandboxtest.Require(t, false, "building the conformance guests needs the go command on PATH")
	}
	if guestsErr != nil {
		t.Fatal(guestsErr)
	}
	return guestsDir
}

// guestService writes a service directory for lang's conformance guest in
// mode, named name, with a manual trigger and a 30 s timeout (timeout
// overrides it when not empty).
func guestService(t *testing.T, name, lang, mode, timeout string) string {
	t.Helper()
	built := conformanceGuests(t)
	dir := t.TempDir()
	copyTo := func(from, to string, perm os.FileMode) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, perm); err != nil {
			t.Fatal(err)
		}
	}
	var runtime, resources string
	if timeout == "" {
		timeout = "30s"
	}
	switch lang {
	case "wasm":
		copyTo(filepath.Join(built, "main.wasm"), "main.wasm", 0o644)
		runtime = "{driver: wasm, language: go, entry: main.wasm}"
		resources = "{memory: 64Mi, timeout: " + timeout + ", concurrency: 4}"
	case "exec":
		copyTo(filepath.Join(built, "guest"), "guest", 0o755)
		runtime = "{driver: process, language: exec, entry: guest}"
		resources = "{memory: 128Mi, timeout: " + timeout + ", pids: 32, concurrency: 4}"
	case "node":
		copyTo(filepath.Join("..", "..", "sandbox", "process", "testdata", "guests", "node", "index.js"), "index.js", 0o644)
		runtime = "{driver: process, language: node, entry: index.js}"
		resources = "{memory: 128Mi, timeout: " + timeout + ", pids: 32, concurrency: 4}"
	case "python":
		copyTo(filepath.Join("..", "..", "sandbox", "process", "testdata", "guests", "python", "main.py"), "main.py", 0o644)
		runtime = "{driver: process, language: python, entry: main.py}"
		resources = "{memory: 128Mi, timeout: " + timeout + ", pids: 32, concurrency: 4}"
	default:
		t.Fatalf("no guest for %s", lang)
	}
	manifest := fmt.Sprintf("name: %s\nversion: 1.0.0\nruntime: %s\nmode: %s\ntriggers:\n  - {kind: manual}\nresources: %s\ncapabilities: {network: none}\n", name, runtime, mode, resources)
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// requireDriver skips (fails in strict CI) when the node's driver is off.
func requireDriver(t *testing.T, n *node.Node, driver string) {
	t.Helper()
	for _, d := range n.Node(context.Background()).Drivers {
		if d.Name == driver {
			sandboxtest.Require(t, d.Enabled, "the "+driver+" driver is disabled on this host: "+d.Reason)
			return
		}
	}
	sandboxtest.Require(t, false, "the node has no "+driver+" driver")
}

// cliJSON runs the CLI with --json and decodes its output into v.
func cliJSONInto(t *testing.T, env map[string]string, v any, args ...string) {
	t.Helper()
	args = slices.Insert(args, 1, "--json")
	out, stderr, err := runCLI(t, env, args...)
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// TestKill kills a running run through the CLI on every driver, in
// command and server mode: the run is listed while in flight, recorded
// cancelled with who cancelled it, a second kill is refused with its
// outcome, and the next run works (in server mode on a replaced worker,
// for the spinning guests cannot honour the cancel) and gets its args.
func TestKill(t *testing.T) {
	n, env := startNode(t, nil)
	for _, tc := range []struct{ lang, mode string }{
		{"wasm", "command"},
		{"wasm", "server"},
		{"exec", "server"},
		{"exec", "command"},
		{"node", "server"},
		{"python", "server"},
	} {
		name := tc.lang + "-" + tc.mode
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if tc.lang == "wasm" {
				requireDriver(t, n, "wasm")
			} else {
				requireDriver(t, n, "process")
			}
			if _, stderr, err := runCLI(t, env, "submit", guestService(t, name, tc.lang, tc.mode, "")); err != nil {
				t.Fatalf("submit: %v\n%s", err, stderr)
			}
			var started api.RunInFlight
			cliJSONInto(t, env, &started, "fire", name, "--input", `{"do":"spin"}`, "--detach")
			if started.ID == "" || started.Service != name || started.Status != api.RunRunning {
				t.Fatalf("fire --detach = %+v", started)
			}
			var running []api.RunInFlight
			cliJSONInto(t, env, &running, "runs", "--running", name)
			if len(running) != 1 || running[0].ID != started.ID || running[0].Trigger.Kind != "manual" || running[0].Start.IsZero() {
				t.Fatalf("runs --running = %+v, want run %s", running, started.ID)
			}

			var res api.CancelResult
			cliJSONInto(t, env, &res, "kill", started.ID)
			if res.Recorded == nil || res.Recorded.Outcome != "cancelled" || !strings.Contains(res.Recorded.Error, "cancelled by operator") {
				t.Fatalf("kill = %+v", res)
			}
			// Within the grace (the process driver's 250 ms), generously
			// bounded for a loaded machine.
			if took := res.RecordedAt.Sub(res.Run.CancelledAt); took < 0 || took > 5*time.Second {
				t.Errorf("recorded %v after the kill was asked", took)
			}
			var shown api.Run
			cliJSONInto(t, env, &shown, "runs", "show", started.ID)
			if shown.Outcome != "cancelled" {
				t.Errorf("runs show = %+v", shown)
			}
			cliJSONInto(t, env, &running, "runs", "--running", name)
			if len(running) != 0 {
				t.Errorf("runs --running after the kill = %+v", running)
			}
			_, _, err := runCLI(t, env, "kill", started.ID)
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "outcome cancelled") {
				t.Errorf("kill of a finished run = %v, want 409 naming its outcome", err)
			}

			var run api.Run
			cliJSONInto(t, env, &run, "run", name, "--input", `{"do":"input"}`, "--", "one", "two words", "")
			if run.Outcome != "ok" || len(run.Output.Emit) != 1 {
				t.Fatalf("run after the kill = %+v", run)
			}
			var in struct{ Args []string }
			if err := json.Unmarshal(run.Output.Emit[0].Message, &in); err != nil || !slices.Equal(in.Args, []string{"one", "two words", ""}) {
				t.Errorf("the handler got args %q (%v), want [one, two words, \"\"]", in.Args, err)
			}
		})
	}
}

// TestRunErrors: what run and kill refuse, and what the node answers for
// an unknown run.
func TestRunErrors(t *testing.T) {
	_, env := startNode(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "echo", "a"}, "go after --"},
		{[]string{"run", "--", "a"}, "NAME before --"},
		{[]string{"fire", "echo", "--plan", "--detach"}, "--plan and --detach"},
		{[]string{"runs", "--running", "--limit", "3"}, "--running and --limit"},
	} {
		_, _, err := runCLI(t, env, tc.args...)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v = %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
	_, _, err := runCLI(t, env, "kill", "06h3a2nyj3pfa646574g")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("kill of an unknown run = %v, want 404", err)
	}
}

// TestFireInterrupted: Ctrl-C while fire waits cancels the run with
// --cancel-on-interrupt or a yes at the terminal's prompt, and otherwise
// leaves it running and says how to kill it. A detached fire answers at
// once and its run is recorded later.
func TestFireInterrupted(t *testing.T) {
	n, env := startNode(t, nil)
	requireDriver(t, n, "wasm")
	tok, err := node.OperatorToken(env["ANDROMEDA_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(n.Addr(), tok)

	// interrupt runs `fire NAME` with stdin and cancels its context, as
	// Ctrl-C does, once the run is in flight.
	interrupt := func(t *testing.T, name string, stdin *fakeStdin, flags ...string) (run api.RunInFlight, stderr string, err error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errb bytes.Buffer
		e := &cli{stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
		if stdin != nil {
			e.stdin = stdin
		}
		done := make(chan error, 1)
		go func() { done <- e.run(ctx, append([]string{"fire", name, "--input", `{"do":"spin"}`}, flags...)) }()
		for {
			rs, err := c.Running(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) == 1 {
				run = rs[0]
				break
			}
			select {
			case err := <-done:
				t.Fatalf("fire ended before it was interrupted: %v\n%s", err, errb.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		cancel()
		err = <-done
		return run, errb.String(), err
	}
	recorded := func(t *testing.T, id string) api.Run {
		t.Helper()
		r, _, done, err := c.WaitRun(context.Background(), id, time.Minute)
		if err != nil || !done {
			t.Fatalf("wait for run %s: %v (done %v)", id, err, done)
		}
		return r
	}

	t.Run("cancel-on-interrupt", func(t *testing.T) {
		t.Parallel()
		if _, stderr, err := runCLI(t, env, "submit", guestService(t, "auto", "wasm", "command", "")); err != nil {
			t.Fatalf("submit: %v\n%s", err, stderr)
		}
		run, stderr, err := interrupt(t, "auto", nil, "--cancel-on-interrupt")
		if !errors.Is(err, errInterrupted) || !strings.Contains(stderr, "cancelled run "+run.ID) {
			t.Fatalf("fire = %v\n%s", err, stderr)
		}
		if r := recorded(t, run.ID); r.Outcome != "cancelled" {
			t.Errorf("run = %+v, want cancelled", r)
		}
	})
	t.Run("prompt-yes", func(t *testing.T) {
		t.Parallel()
		if _, stderr, err := runCLI(t, env, "submit", guestService(t, "asked", "wasm", "command", "")); err != nil {
			t.Fatalf("submit: %v\n%s", err, stderr)
		}
		run, stderr, err := interrupt(t, "asked", &fakeStdin{Reader: strings.NewReader("y\n"), tty: true})
		if !errors.Is(err, errInterrupted) || !strings.Contains(stderr, "cancel run "+run.ID+"? [y/N]") || !strings.Contains(stderr, "cancelled run "+run.ID) {
			t.Fatalf("fire = %v\n%s", err, stderr)
		}
		if r := recorded(t, run.ID); r.Outcome != "cancelled" {
			t.Errorf("run = %+v, want cancelled", r)
		}
	})
	t.Run("left-running", func(t *testing.T) {
		t.Parallel()
		if _, stderr, err := runCLI(t, env, "submit", guestService(t, "left", "wasm", "command", "")); err != nil {
			t.Fatalf("submit: %v\n%s", err, stderr)
		}
		// Not a terminal: no question, the run goes on.
		run, stderr, err := interrupt(t, "left", &fakeStdin{Reader: strings.NewReader("y\n")})
		if !errors.Is(err, errInterrupted) || strings.Contains(stderr, "[y/N]") || !strings.Contains(stderr, "andromeda kill "+run.ID) {
			t.Fatalf("fire = %v\n%s", err, stderr)
		}
		if rs, err := c.Running(context.Background(), "left"); err != nil || len(rs) != 1 || rs[0].ID != run.ID {
			t.Fatalf("running after the interrupt = %+v, %v", rs, err)
		}
		if _, stderr, err := runCLI(t, env, "kill", run.ID); err != nil {
			t.Fatalf("kill: %v\n%s", err, stderr)
		}
	})
	t.Run("detach", func(t *testing.T) {
		t.Parallel()
		if _, stderr, err := runCLI(t, env, "submit", guestService(t, "detached", "wasm", "command", "2s")); err != nil {
			t.Fatalf("submit: %v\n%s", err, stderr)
		}
		out, stderr, err := runCLI(t, env, "fire", "detached", "--input", `{"do":"spin"}`, "--detach")
		if err != nil || !strings.Contains(out, "started run ") {
			t.Fatalf("fire --detach: %v\n%s%s", err, out, stderr)
		}
		id := strings.Fields(out)[2]
		// The run was not recorded when fire answered; it is later, when
		// its 2 s timeout stops it.
		if r := recorded(t, id); r.Outcome != "timeout" || r.ID != id {
			t.Errorf("run = %+v, want timeout", r)
		}
	})
}

// fakeStdin is standard input that says whether it is a terminal.
type fakeStdin struct {
	*strings.Reader
	tty bool
}

func (f *fakeStdin) Terminal() bool { return f.tty }
