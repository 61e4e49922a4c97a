package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/andromeda-runner/andromeda/sandbox/process"
)

// execProc is one worker started by an exec session in an existing
// container: a process.Proc, so that process.NewPool runs it.
type execProc struct {
	cli    *client.Client
	execID string
	conn   client.HijackedResponse
	h      *procHandle
	c      *hostContainer
	uid    int // the service's, in the container

	stdin          *stdinConn
	stdout, stderr *os.File
	demuxed        chan struct{} // closed when the attached stream ended
	exited         chan struct{} // closed when the process ended

	mu      sync.Mutex
	cpu     time.Duration
	hwm     int64
	release sync.Once
}

var _ process.Proc = (*execProc)(nil)

// waitClosed is how long a worker's process may live on after its
// standard streams closed.
const waitClosed = 5 * time.Second

// execStart is how one worker is started in an existing container.
type execStart struct {
	cli     *client.Client
	c       *hostContainer
	id      string // the container's ID
	name    string // and its name, for errors
	uid     int
	argv    []string
	env     []string
	dir     string
	gate    bool // argv waits for a line on stdin before it runs the service
	nproc   uint64
	nofile  uint64
	timeout time.Duration // how long the engine may take to start the exec
}

// start runs one exec session of s: attached to its three streams, as the
// service's uid, its process limits set from the host before the
// service's own code runs (see deployExisting).
func (s *execStart) start(ctx context.Context) (process.Proc, error) {
	user := fmt.Sprintf("%d:%d", s.uid, s.uid)
	created, err := s.cli.ExecCreate(ctx, s.id, client.ExecCreateOptions{
		User: user, AttachStdin: true, AttachStdout: true, AttachStderr: true,
		Env: s.env, WorkingDir: s.dir, Cmd: s.argv,
	})
	if err != nil {
		return nil, fmt.Errorf("create exec in container %s: %w", s.name, err)
	}
	att, err := s.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("start exec in container %s: %w", s.name, err)
	}
	p := &execProc{cli: s.cli, execID: created.ID, conn: att.HijackedResponse, c: s.c, uid: s.uid, demuxed: make(chan struct{}), exited: make(chan struct{})}
	var outW, errW *os.File
	fail := func(err error) (process.Proc, error) {
		if p.h != nil {
			p.h.kill()
			p.h.close()
		}
		att.Close()
		for _, f := range []*os.File{p.stdout, p.stderr, outW, errW} {
			if f != nil {
				f.Close()
			}
		}
		return nil, err
	}
	if p.stdout, outW, err = os.Pipe(); err != nil {
		return fail(err)
	}
	if p.stderr, errW, err = os.Pipe(); err != nil {
		return fail(err)
	}
	pid, err := s.waitPid(ctx, created.ID)
	if err != nil {
		return fail(err)
	}
	if p.h, err = s.c.adoptProc(pid, s.uid); err != nil {
		return fail(fmt.Errorf("exec process: %w", err))
	}
	huid := s.c.hostUID(s.uid)
	if err := p.h.limit(huid, unix.RLIMIT_NPROC, s.nproc); err != nil {
		return fail(fmt.Errorf("set the process limit of the worker (RLIMIT_NPROC): %w", err))
	}
	if s.nofile > 0 {
		if err := p.h.limit(huid, unix.RLIMIT_NOFILE, s.nofile); err != nil {
			return fail(fmt.Errorf("set the open files limit of the worker (RLIMIT_NOFILE): %w", err))
		}
	}
	p.stdin = &stdinConn{conn: att.HijackedResponse}
	if s.gate {
		if err := p.stdin.conn.Conn.SetWriteDeadline(time.Now().Add(s.timeout)); err == nil {
			_, err = io.WriteString(p.stdin.conn.Conn, "\n")
			_ = p.stdin.conn.Conn.SetWriteDeadline(time.Time{})
		}
		if err != nil {
			return fail(fmt.Errorf("release the worker after setting its limits: %w", err))
		}
	}
	h := p.h
	go func() {
		h.wait()
		// What it started ends with it, as in a worker's own PID
		// namespace; and the engine ends the exec's streams only once
		// nothing holds them (or two seconds after its end).
		p.killTree(false)
		close(p.exited)
	}()
	go func() {
		_, _ = stdcopy.StdCopy(&sink{w: outW}, &sink{w: errW}, att.Reader)
		outW.Close()
		errW.Close()
		close(p.demuxed)
	}()
	return p, nil
}

// waitPid waits until the engine reports the exec's process.
func (s *execStart) waitPid(ctx context.Context, execID string) (int, error) {
	deadline := time.Now().Add(s.timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		res, err := s.cli.ExecInspect(ctx, execID, client.ExecInspectOptions{})
		if err != nil {
			return 0, fmt.Errorf("inspect exec: %w", err)
		}
		if res.Running && res.PID > 0 {
			return res.PID, nil
		}
		if !res.Running && (res.PID > 0 || res.ExitCode != 0) {
			why := ""
			switch res.ExitCode {
			case 126:
				why = " (its command cannot be run)"
			case 127:
				why = " (its command was not found)"
			}
			return 0, fmt.Errorf("the worker ended at once with exit code %d%s: %s", res.ExitCode, why, strings.Join(s.argv, " "))
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the engine did not start the exec within %v", s.timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// Stdin is the exec's standard input: the attached connection.
func (p *execProc) Stdin() io.WriteCloser { return p.stdin }

// Stdout carries the exec's standard output.
func (p *execProc) Stdout() io.ReadCloser { return p.stdout }

// Stderr carries the exec's standard error.
func (p *execProc) Stderr() io.ReadCloser { return p.stderr }

// OOMKills is -1: memory is the container's, whose cgroup counts its own
// processes' kills with the service's.
func (p *execProc) OOMKills() int { return -1 }

// CPUTime is the CPU time of the worker's process itself (not of processes
// it started), read from the host's /proc.
func (p *execProc) CPUTime() time.Duration {
	p.sample()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cpu
}

// PeakMemory is the resident high-water mark of the worker's process
// (VmHWM).
func (p *execProc) PeakMemory() int64 {
	p.sample()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hwm
}

// sample reads the process's CPU time and memory high-water mark while it
// runs; after it ended they stay at their last reading.
func (p *execProc) sample() {
	cpu, hwm, ok := p.h.stat()
	if !ok {
		return
	}
	p.mu.Lock()
	p.cpu, p.hwm = max(p.cpu, cpu), max(p.hwm, hwm)
	p.mu.Unlock()
}

// Kill kills the worker's process and every process below it, as root from
// the host.
func (p *execProc) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h.pidfd < 0 {
		return
	}
	// Stop the process first so that it forks no more, then take its
	// tree; a process that ended has no tree of its own to take (its PID
	// may be another's now).
	if unix.PidfdSendSignal(p.h.pidfd, unix.SIGSTOP, nil, 0) != nil {
		return
	}
	p.killTree(true)
	p.h.kill()
}

// killTree kills what the worker's process started (see
// hostContainer.tree).
func (p *execProc) killTree(below bool) {
	for _, pid := range p.c.tree(p.h.pid, p.c.hostUID(p.uid), below) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// Wait waits until the exec's process ended (a process it started may
// still hold its streams) and the engine reports its exit code. A process
// that closed its streams but goes on is killed after waitClosed: it can
// no longer speak the protocol.
func (p *execProc) Wait() process.ProcState {
	select {
	case <-p.demuxed:
	case <-p.exited:
	}
	select {
	case <-p.exited:
	case <-time.After(waitClosed):
		p.Kill()
		<-p.exited
	}
	p.sample()
	var res client.ExecInspectResult
	var err error
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err = p.cli.ExecInspect(ctx, p.execID, client.ExecInspectOptions{})
		cancel()
		// The engine may report the end a moment after the process ended.
		if err != nil || !res.Running || i >= 500 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.conn.Close()
	<-p.demuxed
	switch {
	case err != nil:
		return process.ProcState{Err: fmt.Errorf("%w: inspect exec: %w", ErrEngine, err), RunnerLost: true}
	case res.Running:
		return process.ProcState{Err: fmt.Errorf("%w: the exec's process ended but the engine still reports it running", ErrEngine), RunnerLost: true}
	case signalOf(res.ExitCode) != 0:
		return process.ProcState{Signal: signalOf(res.ExitCode)}
	}
	return process.ProcState{Exited: true, Code: res.ExitCode}
}

// Release frees the pidfd and the connection; a process still running
// is killed first.
func (p *execProc) Release(wait time.Duration) error {
	p.release.Do(func() {
		p.Kill()
		select {
		case <-p.exited:
		case <-time.After(wait):
		}
		p.conn.Close()
		<-p.demuxed
		p.stdout.Close()
		p.stderr.Close()
		p.mu.Lock()
		p.h.close()
		p.mu.Unlock()
	})
	return nil
}
