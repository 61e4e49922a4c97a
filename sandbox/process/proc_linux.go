package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// NewPool deploys workers made by pc.Start exactly as the process driver
// deploys its own: a warm pool in server mode, a fresh worker per
// invocation in command mode, the same protocol client, restarts, backoff,
// health, cancel and kill. Like Deploy, it starts the pool's workers (one,
// then retired, in command mode) and fails when one does not answer ready
// within Config.StartTimeout. The deployment implements sandbox.Tester and
// sandbox.HealthReporter, and WorkersStarted counts its workers. The
// caller must Stop it.
func NewPool(ctx context.Context, pc PoolConfig) (sandbox.Deployment, error) {
	dep, err := newPool(ctx, pc, nil)
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", pc.shape().name, err)
	}
	return dep, nil
}

// newPool is NewPool and the process driver's Deploy: it checks pc, makes
// the deployment, hands it to track (when not nil) before any worker
// starts, and starts it. A deployment that does not start is stopped.
func newPool(ctx context.Context, pc PoolConfig, track func(*deployment) error) (*deployment, error) {
	dep, err := newDeployment(pc)
	if err != nil {
		return nil, err
	}
	if track != nil {
		if err := track(dep); err != nil {
			return nil, err
		}
	}
	if err := dep.start(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = dep.Stop(stopCtx)
		return nil, fmt.Errorf("self-check: %w", err)
	}
	return dep, nil
}

var _ sandbox.HealthReporter = (*deployment)(nil)

// jailProc is a jail as a Proc: the process driver's workers.
type jailProc struct {
	p      *jail.Process
	ended  chan struct{} // closed when Wait returns
	once   sync.Once
	thrash atomic.Pointer[string]
}

var (
	_ Proc           = (*jailProc)(nil)
	_ writeDeadliner = (*os.File)(nil)
)

// startJail starts a worker from tmpl, killed as out of memory when it
// thrashes at its memory limit for thrashAfter (see jail.WatchThrash).
func startJail(tmpl *jail.Template, thrashAfter time.Duration) (Proc, error) {
	sp, err := tmpl.Start()
	if err != nil {
		return nil, err
	}
	j := &jailProc{p: sp, ended: make(chan struct{})}
	sp.WatchThrash(thrashAfter, func(reason string) {
		j.thrash.Store(&reason)
		sp.Kill()
	}, j.ended)
	return j, nil
}

func (j *jailProc) Stdin() io.WriteCloser            { return j.p.Stdin }
func (j *jailProc) Stdout() io.ReadCloser            { return j.p.Stdout }
func (j *jailProc) Stderr() io.ReadCloser            { return j.p.Stderr }
func (j *jailProc) Kill()                            { j.p.Kill() }
func (j *jailProc) CPUTime() time.Duration           { return j.p.CPUTime() }
func (j *jailProc) PeakMemory() int64                { return j.p.PeakMemory() }
func (j *jailProc) OOMKills() int                    { return j.p.OOMKills() }
func (j *jailProc) Release(wait time.Duration) error { return j.p.Release(wait) }

// Wait waits for the worker to end; killed for thrashing, it was out of
// memory.
func (j *jailProc) Wait() ProcState {
	s := waitState(j.p.Wait())
	j.once.Do(func() { close(j.ended) })
	if r := j.thrash.Load(); r != nil {
		s.OOMKilled, s.OOMReason = true, *r
	}
	return s
}

// waitState turns a wait status into a ProcState; the jail's exit status
// 125 (jail.ExitSetupFailed) is a set-up that failed.
func waitState(state *os.ProcessState, err error) ProcState {
	if err != nil {
		return ProcState{Err: err}
	}
	if state == nil {
		return ProcState{Err: errors.New("no exit status")}
	}
	ws, ok := state.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return ProcState{Err: fmt.Errorf("unknown wait status %v", state)}
	case ws.Exited():
		return ProcState{Exited: true, Code: ws.ExitStatus(), SetupFailed: ws.ExitStatus() == jail.ExitSetupFailed}
	case ws.Signaled():
		return ProcState{Signal: ws.Signal()}
	}
	return ProcState{Err: fmt.Errorf("ended: %v", state)}
}
