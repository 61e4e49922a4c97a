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

// TestStopDuringStart checks that Stop does not miss a worker whose start
// is under way when it begins (here a command-mode invocation's, its
// Start held until Stop runs): the worker is stopped as soon as its start
// returns, its invocation ends with sandbox.ErrStopped, and Stop returns
// at once rather than after the invocation (a sleep until its 10 s
// deadline).
func TestStopDuringStart(t *testing.T) {
	dir, entry := guest(t, LangExec)
	ps := &procs{bin: filepath.Join(dir, entry)}
	var held atomic.Bool
	entered, release := make(chan struct{}, 1), make(chan struct{})
	dep, err := NewPool(context.Background(), PoolConfig{
		Config: Config{StartTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Spec:   sandbox.Spec{Service: "plain", Mode: sandbox.ModeCommand, Limits: sandbox.Limits{Timeout: 10 * time.Second}},
		Module: worker.Module{ID: "main"},
		Start: func(ctx context.Context) (Proc, error) {
			if held.Load() {
				entered <- struct{}{}
				<-release
			}
			return ps.start(ctx)
		},
	})
	if err != nil {
		t.Fatalf("NewPool = %v", err)
	}
	held.Store(true)
	type result struct {
		exit sandbox.Exit
		err  error
	}
	invoked := make(chan result, 1)
	go func() {
		exit, err := invokeOp(context.Background(), dep, `{"do":"sleep"}`)
		invoked <- result{exit, err}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- dep.Stop(ctx) }()
	time.Sleep(200 * time.Millisecond) // Stop has looked for workers and found none
	start := time.Now()
	close(release)
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Stop = %v", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Stop returned %v after the worker's start ended, want at once", took)
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("Stop still waits 8 s after the worker's start ended: it missed the worker")
	}
	r := <-invoked
	if !errors.Is(r.err, sandbox.ErrStopped) {
		t.Errorf("the invocation whose worker started during Stop = %s (%q), %v; want sandbox.ErrStopped", r.exit.Outcome, r.exit.Detail, r.err)
	}
	if ps.started.Load() != 2 {
		t.Errorf("Start returned %d workers, want 2", ps.started.Load())
	}
	ps.checkAllReaped(t)
}

// unkillable is a worker its runner cannot kill (a container whose engine
// went away): Kill does nothing until the test lets it.
type unkillable struct {
	*plainProc
	may *atomic.Bool
}

func (p unkillable) Kill() {
	if p.may.Load() {
		p.plainProc.Kill()
	}
}

func (p unkillable) String() string { return "unkillable worker" }

// TestStopBounded checks that Stop keeps to its context when a worker
// cannot be killed: it returns Config.KillWait after the context ends, with an
// error naming the worker, and the worker, once it can be killed, is
// still reaped and released.
func TestStopBounded(t *testing.T) {
	dir, entry := guest(t, LangExec)
	ps := &procs{bin: filepath.Join(dir, entry)}
	var may atomic.Bool
	dep, err := NewPool(context.Background(), PoolConfig{
		Config: Config{StartTimeout: 10 * time.Second, CancelGrace: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Spec:   sandbox.Spec{Service: "plain", Mode: sandbox.ModeServer, Limits: sandbox.Limits{Timeout: 300 * time.Millisecond, Concurrency: 1}},
		Module: worker.Module{ID: "main"},
		Start: func(ctx context.Context) (Proc, error) {
			p, err := ps.start(ctx)
			if err != nil {
				return nil, err
			}
			return unkillable{p.(*plainProc), &may}, nil
		},
	})
	if err != nil {
		t.Fatalf("NewPool = %v", err)
	}
	// A sleep past its deadline: the worker ignores the cancel and cannot
	// be killed, so it sleeps on.
	exit, err := invokeOp(context.Background(), dep, `{"do":"sleep"}`)
	if err != nil || exit.Outcome != sandbox.Timeout {
		t.Fatalf("sleep = %s (%q), %v; want timeout", exit.Outcome, exit.Detail, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = dep.Stop(ctx)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "unkillable worker") {
		t.Errorf("Stop = %v, want an error naming the worker left running", err)
	}
	if took > 500*time.Millisecond+DefaultKillWait+time.Second {
		t.Errorf("Stop took %v, want about %v", took, 500*time.Millisecond+DefaultKillWait)
	}
	may.Store(true)
	for _, p := range ps.all {
		p.Kill()
	}
	ps.checkAllReaped(t)
}
