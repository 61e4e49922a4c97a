package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// A worker that answers ready and then stops reading its standard input
// (a handler that spins, a runtime that paused its input) fills the pipe,
// and a write to it blocks. The tests below check that every write is
// bounded: an invocation ends within its timeout and the cancel grace,
// Stop within its deadline, and the next invocation gets a fresh worker.

const (
	blockTimeout = 500 * time.Millisecond // the invocations' deadline
	blockGrace   = 200 * time.Millisecond // the pool's CancelGrace
	blockSlack   = time.Second            // reaping a worker, a slow machine, -race
	blockHang    = 10 * time.Second       // past this the driver hangs
)

// wedgeScript is a worker that runs the Go guest, except the first one
// started after the flag file exists: that one removes the flag, answers
// ready and never reads its input.
const wedgeScript = `#!/bin/sh
if rm %[1]q 2>/dev/null; then
	echo '{"type":"ready","id":"init","protocol":1,"concurrency":16}'
	exec sleep 1000
fi
exec %[2]q
`

// wedgedPool deploys the Go guest on plain processes through wedgeScript
// and has its next worker (server mode: the pool's one worker; command
// mode: the first invocation's) stop reading its input. Capacity is the
// invocations a worker is sent at once. Stop is bounded when t ends: a
// Stop that hangs fails t, and every process is killed.
func wedgedPool(t *testing.T, mode sandbox.Mode, capacity int) (sandbox.Deployment, *procs) {
	t.Helper()
	dir, entry := guest(t, LangExec)
	tmp := t.TempDir()
	flag := filepath.Join(tmp, "wedge")
	bin := filepath.Join(tmp, "worker.sh")
	if err := os.WriteFile(bin, []byte(fmt.Sprintf(wedgeScript, flag, filepath.Join(dir, entry))), 0o755); err != nil {
		t.Fatal(err)
	}
	arm := func() {
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if mode == sandbox.ModeServer {
		arm()
	}
	ps := &procs{bin: bin}
	dep, err := NewPool(context.Background(), PoolConfig{
		Config: Config{CancelGrace: blockGrace, Backoff: 10 * time.Millisecond, StartTimeout: 10 * time.Second,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Spec:     sandbox.Spec{Service: "plain", Mode: mode, Limits: sandbox.Limits{Timeout: 5 * time.Second, Concurrency: 1}},
		Module:   worker.Module{ID: "main"},
		Capacity: capacity,
		Start:    ps.start,
	})
	if err != nil {
		t.Fatalf("NewPool = %v", err)
	}
	if mode == sandbox.ModeCommand {
		// NewPool's worker checked that the service starts; wait until it
		// is gone, so that the next worker is the invocation's.
		ps.mu.Lock()
		first := ps.all[0]
		ps.mu.Unlock()
		<-first.reaped
		arm()
	}
	t.Cleanup(func() {
		if err := stopWithin(dep, 5*time.Second); err != nil {
			t.Errorf("Stop when the test ends: %v", err)
			ps.mu.Lock()
			for _, p := range ps.all {
				p.Kill()
			}
			ps.mu.Unlock()
			return
		}
		ps.checkAllReaped(t)
	})
	return dep, ps
}

// stopWithin stops dep with deadline d and returns Stop's error, or an
// error when Stop has not returned blockHang after its deadline.
func stopWithin(dep sandbox.Deployment, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- dep.Stop(ctx) }()
	select {
	case err := <-stopped:
		return err
	case <-time.After(d + blockHang):
		return fmt.Errorf("Stop with a %v deadline still blocked after %v", d, d+blockHang)
	}
}

// result is one invocation's end and how long it took.
type result struct {
	exit sandbox.Exit
	err  error
	took time.Duration
}

// invokeAsync invokes dep with the guest operation op within timeout, in
// the background.
func invokeAsync(dep sandbox.Deployment, op string, timeout time.Duration) <-chan result {
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		exit, err := invokeOp(ctx, dep, op)
		done <- result{exit, err, time.Since(start)}
	}()
	return done
}

// await returns the result on done, or fails t when it has not come
// within blockHang.
func await(t *testing.T, what string, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(blockHang):
		t.Fatalf("%s still blocked after %v", what, blockHang)
		return result{}
	}
}

// fillOp is a guest operation whose invoke line fills the pipe behind the
// init message but stays under 64 KiB, where the driver once set no write
// deadline.
func fillOp() string {
	return `{"do":"echo","data":"` + strings.Repeat("a", 64<<10-200) + `"}`
}

// waitSent waits until dep has sent n protocol messages: the last one is
// being written.
func waitSent(t *testing.T, dep sandbox.Deployment, n uint64) {
	t.Helper()
	mc := dep.(sandbox.MessageCounter)
	deadline := time.Now().Add(5 * time.Second)
	for {
		sent, _ := mc.Messages()
		if sent >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d protocol messages sent after 5 s, want %d", sent, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStdinBlocked runs, in both modes, a worker that answers ready and
// never reads its input: an invocation whose line fills the pipe ends
// within its timeout and the grace as a crash that names the reason, and
// the next invocation gets a fresh worker; Stop while a write is stuck
// returns within its deadline; in server mode, several small invocations
// in flight that fill the pipe together all end in time.
func TestStdinBlocked(t *testing.T) {
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		t.Run(string(mode)+"/invoke", func(t *testing.T) {
			t.Parallel()
			dep, _ := wedgedPool(t, mode, 0)
			r := await(t, "an invocation on a worker that does not read", invokeAsync(dep, fillOp(), blockTimeout))
			t.Logf("invocation: %s after %v: %q", r.exit.Outcome, r.took, r.exit.Detail)
			if r.took > blockTimeout+blockGrace+blockSlack {
				t.Errorf("the invocation took %v, want at most its timeout %v and the grace %v", r.took, blockTimeout, blockGrace)
			}
			if r.err != nil || r.exit.Outcome != sandbox.Crashed || !strings.Contains(r.exit.Detail, "did not read its input") {
				t.Errorf("invocation = %s (%q), %v; want crashed: the worker did not read its input", r.exit.Outcome, r.exit.Detail, r.err)
			}
			wantEcho(t, dep)
		})

		t.Run(string(mode)+"/stop", func(t *testing.T) {
			t.Parallel()
			dep, ps := wedgedPool(t, mode, 0)
			base, _ := dep.(sandbox.MessageCounter).Messages()
			invoked := invokeAsync(dep, fillOp(), blockHang)
			extra := uint64(1) // the invoke message
			if mode == sandbox.ModeCommand {
				extra = 2 // its worker's init, then the invoke
			}
			waitSent(t, dep, base+extra)
			const deadline = time.Second
			start := time.Now()
			if err := stopWithin(dep, deadline); err != nil {
				t.Errorf("Stop = %v", err)
			}
			took := time.Since(start)
			t.Logf("Stop took %v", took)
			if took > deadline {
				t.Errorf("Stop took %v, want at most its deadline %v", took, deadline)
			}
			r := await(t, "an invocation whose worker was stopped", invoked)
			if !errors.Is(r.err, sandbox.ErrStopped) {
				t.Errorf("invocation = %s (%q), %v; want sandbox.ErrStopped", r.exit.Outcome, r.exit.Detail, r.err)
			}
			ps.checkAllReaped(t)
		})
	}

	t.Run("server/in-flight", func(t *testing.T) {
		t.Parallel()
		dep, _ := wedgedPool(t, sandbox.ModeServer, 16)
		op := `{"do":"echo","data":"` + strings.Repeat("b", 8<<10) + `"}`
		var runs []<-chan result
		for range 12 { // 96 KiB: the pipe fills and a write blocks
			runs = append(runs, invokeAsync(dep, op, blockTimeout))
		}
		stalled := 0
		for i, done := range runs {
			r := await(t, fmt.Sprintf("invocation %d", i), done)
			t.Logf("invocation %d: %s after %v: %q", i, r.exit.Outcome, r.took, firstLine(r.exit.Detail))
			if r.took > blockTimeout+blockGrace+blockSlack {
				t.Errorf("invocation %d took %v, want at most its timeout %v and the grace %v", i, r.took, blockTimeout, blockGrace)
			}
			if r.err != nil || r.exit.Outcome == sandbox.OK {
				t.Errorf("invocation %d = %s (%q), %v; want a timeout or a crash", i, r.exit.Outcome, r.exit.Detail, r.err)
			}
			if strings.Contains(r.exit.Detail, "did not read its input") {
				stalled++
			}
		}
		if stalled == 0 {
			t.Errorf("no invocation says the worker did not read its input")
		}
		wantEcho(t, dep)
	})
}

// TestStdinBlockedNode runs the scenario on the process driver's sandbox
// with the Node.js guest: a handler that spins stops the runtime reading
// its input; three invocations with inputs near 64 KiB sent to it next
// fill the pipe, and the spinning one's cancel cannot be written. Every
// invocation ends within its timeout and the grace, the worker is killed
// and replaced, and the next invocation is served.
func TestStdinBlockedNode(t *testing.T) {
	requireSandbox(t)
	requireLang(t, LangNode)
	d := sharedDriver(t)
	dir, entry := guest(t, LangNode)
	spec := sandbox.Spec{Service: "stdin-node", Dir: dir, Entry: entry, Language: LangNode,
		Limits: sandbox.Limits{Timeout: 10 * time.Second, Concurrency: 1}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mode, module, tmpl, err := d.workerTemplate(ctx, spec, spec.Service, "")
	if err != nil {
		t.Fatal(err)
	}
	pc := d.poolConfig(spec, spec.Service, mode, module, tmpl)
	pc.Capacity = 4 // one worker takes all four invocations
	pc.Config.CancelGrace = blockGrace
	pc.Config.Backoff = 10 * time.Millisecond
	dep, err := NewPool(ctx, pc)
	if err != nil {
		t.Fatalf("NewPool = %v", err)
	}
	t.Cleanup(func() {
		if err := stopWithin(dep, 5*time.Second); err != nil {
			t.Errorf("Stop when the test ends: %v", err)
			dd := dep.(*deployment)
			dd.mu.Lock()
			for w := range dd.live {
				w.proc.Kill()
			}
			dd.mu.Unlock()
		}
	})

	base, _ := dep.(sandbox.MessageCounter).Messages()
	const spinFor = time.Second
	spin := invokeAsync(dep, `{"do":"spin"}`, spinFor)
	waitSent(t, dep, base+1) // written before the big ones: the runtime reads it first
	big := `{"do":"echo","data":"` + strings.Repeat("c", 64<<10-200) + `"}`
	var fills []<-chan result
	for range 3 {
		fills = append(fills, invokeAsync(dep, big, 3*time.Second))
	}

	r := await(t, "the spinning invocation", spin)
	t.Logf("spinning invocation: %s after %v", r.exit.Outcome, r.took)
	if r.took > spinFor+blockGrace+blockSlack {
		t.Errorf("the spinning invocation took %v, want at most its timeout %v and the grace %v", r.took, spinFor, blockGrace)
	}
	if r.err != nil || r.exit.Outcome != sandbox.Timeout {
		t.Errorf("spinning invocation = %s (%q), %v; want timeout", r.exit.Outcome, r.exit.Detail, r.err)
	}
	for i, done := range fills {
		r := await(t, fmt.Sprintf("invocation %d behind the spinning one", i), done)
		t.Logf("invocation %d: %s after %v: %q", i, r.exit.Outcome, r.took, firstLine(r.exit.Detail))
		if r.took > 3*time.Second+blockGrace+blockSlack {
			t.Errorf("invocation %d took %v, want at most its timeout 3s and the grace %v", i, r.took, blockGrace)
		}
		if r.err != nil || r.exit.Outcome != sandbox.Crashed || !strings.Contains(r.exit.Detail, "did not read its input") {
			t.Errorf("invocation %d = %s (%q), %v; want crashed: the worker did not read its input", i, r.exit.Outcome, r.exit.Detail, r.err)
		}
	}
	exit, err := invokeOp(ctx, dep, `{"do":"echo","data":"hello"}`)
	if err != nil || exit.Outcome != sandbox.OK {
		t.Errorf("echo after the worker was replaced = %s (%q), %v", exit.Outcome, exit.Detail, err)
	}
}
