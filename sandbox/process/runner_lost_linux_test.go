package process

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// lostProc is a worker whose runner loses track of it when lose is set (a
// container whose engine went away): its Wait reports RunnerLost.
type lostProc struct {
	*plainProc
	lose *atomic.Bool
}

func (p lostProc) Wait() ProcState {
	st := p.plainProc.Wait()
	if p.lose.Load() {
		return ProcState{Err: errors.New("engine gone"), RunnerLost: true}
	}
	return st
}

// TestRunnerLost checks that a worker its runner lost is the runner's
// failure, not the service's crash: its invocation ends with outcome
// Error and an error naming the cause, the deployment stays healthy (with
// UnhealthyAfter 1, where one crash makes it unhealthy), and the worker is
// replaced.
func TestRunnerLost(t *testing.T) {
	dir, entry := guest(t, LangExec)
	ps := &procs{bin: filepath.Join(dir, entry)}
	var lose atomic.Bool
	dep, err := NewPool(context.Background(), PoolConfig{
		Config: Config{StartTimeout: 10 * time.Second, Backoff: 10 * time.Millisecond, UnhealthyAfter: 1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Spec:   sandbox.Spec{Service: "plain", Mode: sandbox.ModeServer, Limits: sandbox.Limits{Timeout: 5 * time.Second, Concurrency: 1}},
		Module: worker.Module{ID: "main"},
		Start: func(ctx context.Context) (Proc, error) {
			p, err := ps.start(ctx)
			if err != nil {
				return nil, err
			}
			return lostProc{p.(*plainProc), &lose}, nil
		},
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
	health := dep.(sandbox.HealthReporter)

	lose.Store(true)
	exit, err := invokeOp(context.Background(), dep, `{"do":"crash","code":3}`)
	lose.Store(false)
	if err == nil || !strings.Contains(err.Error(), "engine gone") || exit.Outcome != sandbox.Error {
		t.Errorf("a worker its runner lost = %s (%q), %v; want outcome error and an error naming the cause", exit.Outcome, exit.Detail, err)
	}
	if ok, why := health.Health(); !ok {
		t.Errorf("Health after a worker lost by its runner = false (%s), want true", why)
	}
	waitStarted(t, dep, 2)
	wantEcho(t, dep)

	// The same end, seen by the process itself: a crash, counted.
	exit, err = invokeOp(context.Background(), dep, `{"do":"crash","code":3}`)
	if err != nil || exit.Outcome != sandbox.Crashed {
		t.Errorf("a crash = %s (%q), %v; want crashed", exit.Outcome, exit.Detail, err)
	}
	if ok, _ := health.Health(); ok {
		t.Errorf("Health after a crash with UnhealthyAfter 1 = true, want false")
	}
}
