package process

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// plainProc is a Proc of a plain, unsandboxed child process started with
// os/exec: what another driver's Start returns, with nothing of the jail.
type plainProc struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr io.ReadCloser
	kills          *atomic.Int64 // the test's count of kills
	reaped         chan struct{} // closed by Wait

	mu       sync.Mutex
	waited   bool
	released int
}

// onlyReader and onlyWriter hide an *os.File's other methods, so that the
// pool sees a stream that is neither a pipe it can spin on nor one with a
// write deadline.
type onlyReader struct{ io.ReadCloser }
type onlyWriter struct{ io.WriteCloser }

// procs counts a test's plain workers and their kills, and knows them all.
type procs struct {
	bin     string
	hide    bool // hide the *os.File streams
	started atomic.Int64
	kills   atomic.Int64
	fail    atomic.Bool // Start fails: the runner cannot start a worker
	mu      sync.Mutex
	all     []*plainProc
}

// start is a PoolConfig.Start: it runs the guest in a process group of its
// own, with a clean environment, on pipes of its own.
func (ps *procs) start(ctx context.Context) (Proc, error) {
	if ps.fail.Load() {
		return nil, errors.New("no worker for you")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(ps.bin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/tmp"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, err
	}
	p := &plainProc{cmd: cmd, kills: &ps.kills, reaped: make(chan struct{})}
	p.stdin, p.stdout, p.stderr = inW, outR, errR
	if ps.hide {
		p.stdin, p.stdout, p.stderr = onlyWriter{inW}, onlyReader{outR}, onlyReader{errR}
	}
	ps.started.Add(1)
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return p, nil
}

func (p *plainProc) Stdin() io.WriteCloser  { return p.stdin }
func (p *plainProc) Stdout() io.ReadCloser  { return p.stdout }
func (p *plainProc) Stderr() io.ReadCloser  { return p.stderr }
func (p *plainProc) CPUTime() time.Duration { return -1 }
func (p *plainProc) PeakMemory() int64      { return 0 }
func (p *plainProc) OOMKills() int          { return -1 }

func (p *plainProc) Release(time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.released++
	return nil
}

// Wait reaps the process and says how it ended.
func (p *plainProc) Wait() ProcState {
	err := p.cmd.Wait()
	p.mu.Lock()
	p.waited = true
	p.mu.Unlock()
	close(p.reaped)
	st := p.cmd.ProcessState
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ProcState{Err: err}
	}
	ws := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return ProcState{Signal: ws.Signal()}
	}
	return ProcState{Exited: true, Code: ws.ExitStatus()}
}

// Kill kills the process group, unless the process was reaped (its pid
// may be another's by then).
func (p *plainProc) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waited {
		return
	}
	p.kills.Add(1)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// checkAllReaped fails unless every process ps started was waited for and
// released.
func (ps *procs) checkAllReaped(t *testing.T) {
	t.Helper()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.all {
		select {
		case <-p.reaped:
		case <-time.After(5 * time.Second):
			t.Errorf("worker %d not reaped after Stop", p.cmd.Process.Pid)
			continue
		}
		// Release follows the reap on the pool's reader goroutine: after a
		// Stop that returned before the worker died (TestStopBounded) it
		// comes a moment later.
		var released int
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			p.mu.Lock()
			released = p.released
			p.mu.Unlock()
			if released > 0 || time.Now().After(deadline) {
				break
			}
		}
		if released != 1 {
			t.Errorf("worker %d released %d times, want once", p.cmd.Process.Pid, released)
		}
	}
}

// plainPool deploys the Go guest on plain processes through NewPool.
func plainPool(t *testing.T, mode sandbox.Mode, hide bool) (sandbox.Deployment, *procs) {
	t.Helper()
	dir, entry := guest(t, LangExec)
	ps := &procs{bin: filepath.Join(dir, entry), hide: hide}
	var logMu sync.Mutex
	var logs []string
	dep, err := NewPool(context.Background(), PoolConfig{
		Config: Config{CancelGrace: 200 * time.Millisecond, Backoff: 10 * time.Millisecond,
			StartTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Spec: sandbox.Spec{Service: "plain", Mode: mode, Limits: sandbox.Limits{Timeout: 5 * time.Second, Concurrency: 2},
			Log: func(line string) { logMu.Lock(); logs = append(logs, line); logMu.Unlock() }},
		Module: worker.Module{ID: "main"},
		Start:  ps.start,
	})
	if err != nil {
		t.Fatalf("NewPool = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := dep.Stop(ctx); err != nil {
			t.Errorf("Stop = %v", err)
		}
		ps.checkAllReaped(t)
	})
	return dep, ps
}

// invokeOp invokes dep with the guest operation op.
func invokeOp(ctx context.Context, dep sandbox.Deployment, op string) (sandbox.Exit, error) {
	return dep.Invoke(ctx, []byte(`{"run_id":"r","service":"plain","trigger":{"kind":"manual"},"message":`+op+`}`))
}

// wantEcho fails unless an echo invocation of dep succeeds.
func wantEcho(t *testing.T, dep sandbox.Deployment) {
	t.Helper()
	exit, err := invokeOp(context.Background(), dep, `{"do":"echo","data":"hello"}`)
	if err != nil || exit.Outcome != sandbox.OK || !strings.Contains(string(exit.Output), `"topic":"echo","message":"hello"`) {
		t.Fatalf("echo = %s %s (%s), %v", exit.Outcome, exit.Output, exit.Detail, err)
	}
}

// TestNewPool deploys a Go worker (runtimes/go) as plain child processes
// through NewPool, in both modes, with pipes the pool can spin on and with
// streams that are neither pipes nor deadline writers: invocations,
// a worker that dies (crashed, with its status and standard error), a
// cancel the worker honours, one it ignores (the worker is killed and
// replaced), a deadline, a runner that cannot start a worker, and Stop,
// which must leave every process reaped and released.
func TestNewPool(t *testing.T) {
	for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
		for _, hide := range []bool{false, true} {
			name := string(mode) + "/pipes"
			if hide {
				name = string(mode) + "/streams"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				testPlainPool(t, mode, hide)
			})
		}
	}
}

func testPlainPool(t *testing.T, mode sandbox.Mode, hide bool) {
	dep, ps := plainPool(t, mode, hide)
	server := mode == sandbox.ModeServer
	// Deploy starts the pool (2 workers) or one worker to check the
	// service loads (command mode).
	started := int64(1)
	if server {
		started = 2
	}
	if n := WorkersStarted(dep); n != started || ps.started.Load() != started {
		t.Fatalf("after NewPool: WorkersStarted = %d, Start called %d times, want %d", n, ps.started.Load(), started)
	}

	wantEcho(t, dep)
	if !server {
		started++ // a fresh worker per invocation
	}
	if n := WorkersStarted(dep); n != started {
		t.Errorf("after an echo: WorkersStarted = %d, want %d", n, started)
	}

	// A worker that dies mid-invocation: crashed, with its exit status and
	// the end of its standard error.
	exit, err := invokeOp(context.Background(), dep, `{"do":"crash","code":3}`)
	if err != nil || exit.Outcome != sandbox.Crashed || !strings.Contains(exit.Detail, "worker exited with status 3") ||
		!strings.Contains(exit.Detail, "crash: about to exit with status 3") {
		t.Fatalf("crash = %s (%q), %v; want crashed with the exit status and stderr", exit.Outcome, exit.Detail, err)
	}
	// A server-mode pool restarts the worker (after its backoff); either
	// way the next invocation is served.
	wantEcho(t, dep)
	started++
	if !server {
		started++
	}
	waitStarted(t, dep, started)

	// A cancel the worker honours: the invocation ends with the caller's
	// error and, in server mode, the worker lives on.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	exit, err = invokeOp(ctx, dep, `{"do":"wait"}`)
	if !errors.Is(err, context.Canceled) || exit.Outcome != sandbox.Crashed || exit.Detail != "cancelled" {
		t.Fatalf("cancelled wait = %s (%q), %v; want crashed, cancelled, context.Canceled", exit.Outcome, exit.Detail, err)
	}
	kills := ps.kills.Load()
	wantEcho(t, dep)
	if !server {
		started += 2
	}
	waitStarted(t, dep, started)
	if server && ps.kills.Load() != kills {
		t.Errorf("a worker that honoured its cancel was killed")
	}

	// A cancel the worker ignores (it sleeps forever): the pool kills it
	// after CancelGrace (at once in command mode) and, in server mode,
	// starts another, without counting a crash.
	kills = ps.kills.Load()
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	exit, err = invokeOp(ctx, dep, `{"do":"sleep"}`)
	if !errors.Is(err, context.Canceled) || exit.Outcome != sandbox.Crashed {
		t.Fatalf("cancelled sleep = %s (%q), %v; want crashed, context.Canceled", exit.Outcome, exit.Detail, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ps.kills.Load() == kills && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ps.kills.Load() == kills {
		t.Fatalf("the worker that ignored its cancel was not killed")
	}
	started++
	waitStarted(t, dep, started)
	wantEcho(t, dep)
	if !server {
		started++
	}

	// A deadline: the Timeout outcome; the sleeping worker is killed.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	exit, err = invokeOp(ctx, dep, `{"do":"sleep"}`)
	cancel()
	if err != nil || exit.Outcome != sandbox.Timeout {
		t.Fatalf("sleep past the deadline = %s (%q), %v; want timeout", exit.Outcome, exit.Detail, err)
	}
	started++
	waitStarted(t, dep, started)
	if healthy, why := dep.(sandbox.HealthReporter).Health(); !healthy {
		t.Errorf("Health = false (%s) after one crash", why)
	}

	// The runner cannot start a worker: an error of the runner in command
	// mode; in server mode, a restart that fails counts as a crash and the
	// pool keeps the workers it has.
	if !server {
		ps.fail.Store(true)
		exit, err = invokeOp(context.Background(), dep, `{"do":"echo"}`)
		ps.fail.Store(false)
		if err == nil || exit.Outcome != sandbox.Error || !strings.Contains(err.Error(), "no worker for you") {
			t.Fatalf("invoke while Start fails = %s (%q), %v; want the runner's error", exit.Outcome, exit.Detail, err)
		}
	}
	wantEcho(t, dep)
	if !server {
		started++
	}

	// The service's self-test goes to a worker too (a fresh one in
	// command mode); the guest has none.
	if ran, err := dep.(sandbox.Tester).Test(context.Background()); ran || err != nil {
		t.Errorf("Test = %v, %v; want no self-test", ran, err)
	}
	if !server {
		started++
	}
	waitStarted(t, dep, started)
}

// waitStarted waits until dep has started want workers; a server-mode
// restart happens after a backoff, in the background.
func waitStarted(t *testing.T, dep sandbox.Deployment, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for WorkersStarted(dep) < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := WorkersStarted(dep); n != want {
		t.Fatalf("WorkersStarted = %d, want %d", n, want)
	}
}

// TestNewPoolRefuses checks that NewPool names the field of a PoolConfig
// it cannot run and starts nothing.
func TestNewPoolRefuses(t *testing.T) {
	ps := &procs{bin: "/nonexistent"}
	for _, tc := range []struct {
		name string
		pc   PoolConfig
		want string
	}{
		{"no start", PoolConfig{}, "start: must be set"},
		{"capacity", PoolConfig{Start: ps.start, Capacity: -1}, "capacity: must not be negative"},
		{"mode", PoolConfig{Start: ps.start, Spec: sandbox.Spec{Mode: "batch"}}, `mode "batch"`},
		{"config", PoolConfig{Start: ps.start, Config: Config{CancelGrace: -1}}, "cancel_grace: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dep, err := NewPool(context.Background(), tc.pc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewPool = %v, %v; want an error containing %q", dep, err, tc.want)
			}
		})
	}
	if n := ps.started.Load(); n != 0 {
		t.Errorf("Start called %d times for refused configs", n)
	}
	// A worker that cannot start fails NewPool with the runner's error.
	ps.fail.Store(true)
	if _, err := NewPool(context.Background(), PoolConfig{Start: ps.start}); err == nil || !strings.Contains(err.Error(), "no worker for you") {
		t.Errorf("NewPool with a failing Start = %v, want its error", err)
	}
}

// TestInitMessage checks the init message's max_in_flight per mode and
// capacity, and its module.
func TestInitMessage(t *testing.T) {
	for _, tc := range []struct {
		pc   PoolConfig
		want int
	}{
		{PoolConfig{}, DefaultConcurrency},
		{PoolConfig{Spec: sandbox.Spec{Limits: sandbox.Limits{Concurrency: 3}}}, 3},
		{PoolConfig{Spec: sandbox.Spec{Limits: sandbox.Limits{Concurrency: 3}}, Capacity: 8}, 8},
		{PoolConfig{Spec: sandbox.Spec{Mode: sandbox.ModeCommand, Limits: sandbox.Limits{Concurrency: 3}}, Capacity: 8}, 1},
	} {
		tc.pc.Module = worker.Module{ID: "main", Entry: "run"}
		b := InitMessage(tc.pc)
		var m worker.Message
		if err := json.Unmarshal(b, &m); err != nil || strings.HasSuffix(string(b), "\n") {
			t.Fatalf("InitMessage = %q, %v; want one JSON line without newline", b, err)
		}
		if m.Type != worker.TypeInit || m.Protocol != worker.Version || m.MaxInFlight != tc.want || m.Service != "service" ||
			len(m.Modules) != 1 || m.Modules[0].Entry != "run" || m.MaxLine != worker.DefaultMaxLine {
			t.Errorf("InitMessage(%+v) = %s; want max_in_flight %d, service, module and max_line", tc.pc, b, tc.want)
		}
	}
}

// TestNewRawWorker speaks the protocol with a plain process through
// NewRawWorker: init, ready, one invocation, then its end of input, after
// which it exits with status 0; a killed one reports its signal.
func TestNewRawWorker(t *testing.T) {
	dir, entry := guest(t, LangExec)
	ps := &procs{bin: filepath.Join(dir, entry)}
	pc := PoolConfig{Spec: sandbox.Spec{Service: "raw"}, Module: worker.Module{ID: "main"}, Start: ps.start}
	p, err := ps.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w := NewRawWorker(p, InitMessage(pc))
	go io.Copy(io.Discard, w.Stderr)
	out := bufio.NewScanner(w.Stdout)
	io.WriteString(w.Stdin, string(w.Init)+"\n")
	if !out.Scan() || !strings.Contains(out.Text(), `"type":"ready"`) {
		t.Fatalf("answer to init = %q, %v", out.Text(), out.Err())
	}
	io.WriteString(w.Stdin, `{"type":"invoke","id":"1","input":{"run_id":"r","message":{"do":"echo","data":1}}}`+"\n")
	if !out.Scan() || !strings.Contains(out.Text(), `"topic":"echo","message":1`) {
		t.Fatalf("answer to invoke = %q, %v", out.Text(), out.Err())
	}
	w.Stdin.Close()
	if status, how := w.Wait(); status != 0 || how != "exited with status 0" {
		t.Errorf("Wait = %d %q, want 0 after the end of input", status, how)
	}
	if status2, _ := w.Wait(); status2 != 0 {
		t.Errorf("a second Wait = %d, want the first's result", status2)
	}

	p, err = ps.start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w = NewRawWorker(p, InitMessage(pc))
	w.Kill()
	w.Kill()
	if status, how := w.Wait(); status != -1 || !strings.Contains(how, "killed by signal 9") {
		t.Errorf("Wait after Kill = %d %q, want -1, killed by signal 9", status, how)
	}
	ps.checkAllReaped(t)
}

// TestWaitState checks how a jail's wait status becomes a ProcState, on
// real processes: an exit, the jail's set-up failure (125), a signal.
func TestWaitState(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   ProcState
	}{
		{"exit 0", ProcState{Exited: true}},
		{"exit 3", ProcState{Exited: true, Code: 3}},
		{"exit 125", ProcState{Exited: true, Code: 125, SetupFailed: true}},
		{"kill -9 $$", ProcState{Signal: syscall.SIGKILL}},
	} {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		_, _ = cmd.Process.Wait()
		state, err := cmd.Process.Wait() // reaped: an error
		if got := waitState(state, err); got.Err == nil {
			t.Errorf("waitState of a second Wait = %+v, want the error", got)
		}
		cmd = exec.Command("/bin/sh", "-c", tc.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if got := waitState(cmd.Process.Wait()); got != tc.want {
			t.Errorf("waitState(%q) = %+v, want %+v", tc.script, got, tc.want)
		}
	}
}

// endedProc is a Proc that has ended as state says: what classify reads.
type endedProc struct {
	plainProc
	oomKills int
}

func (p *endedProc) OOMKills() int { return p.oomKills }

// TestClassify checks the outcome and detail of a worker's end for each
// kind of ProcState, as a jail or a container reports it.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		state    ProcState
		oomKills int
		ready    bool
		outcome  sandbox.Outcome
		detail   string
	}{
		{ProcState{Exited: true, Code: 2}, -1, true, sandbox.Crashed, "worker exited with status 2"},
		{ProcState{Exited: true, Code: 125, SetupFailed: true}, -1, false, sandbox.Crashed, "sandbox set-up failed (exit status 125)"},
		{ProcState{Exited: true, Code: 125, SetupFailed: true}, -1, true, sandbox.Crashed, "worker exited with status 125"},
		{ProcState{SetupFailed: true}, -1, false, sandbox.Crashed, "sandbox set-up failed"},
		{ProcState{Signal: syscall.SIGSEGV}, -1, true, sandbox.Crashed, "worker killed by signal 11 (segmentation fault)"},
		{ProcState{Exited: true, Code: 137, OOMKilled: true}, -1, true, sandbox.OOM, "out of memory"},
		{ProcState{Signal: syscall.SIGKILL}, 1, true, sandbox.OOM, "out of memory"},
		{ProcState{Signal: syscall.SIGKILL}, 0, true, sandbox.Crashed, "worker killed by signal 9"},
		{ProcState{Err: errors.New("container gone")}, -1, true, sandbox.Crashed, "worker lost: container gone"},
		{ProcState{Err: errors.New("engine gone"), RunnerLost: true}, -1, true, sandbox.Error, "worker lost by its runner: engine gone"},
		{ProcState{}, -1, true, sandbox.Crashed, "worker ended without an exit status"},
	} {
		w := &workerProc{proc: &endedProc{oomKills: tc.oomKills}, ready: tc.ready}
		w.tail.add("last words")
		e := w.classify(tc.state)
		if e.outcome != tc.outcome || !strings.HasPrefix(e.detail, tc.detail) || !strings.HasSuffix(e.detail, "stderr:\nlast words") {
			t.Errorf("classify(%+v, oom kills %d, ready %v) = %s %q; want %s %q and the stderr tail", tc.state, tc.oomKills, tc.ready, e.outcome, e.detail, tc.outcome, tc.detail)
		}
	}
}
