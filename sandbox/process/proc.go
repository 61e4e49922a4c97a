package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// Proc is one started worker process as a pool sees it: its standard
// streams and its end. The process driver's jails are Procs; the docker
// driver's containers and exec sessions are too.
type Proc interface {
	// Stdin is the worker's standard input. Every write to it is bounded
	// (an invocation's by its deadline): when it also has
	// SetWriteDeadline(time.Time) error, by that, else by a timer that
	// kills the worker.
	Stdin() io.WriteCloser
	// Stdout carries the worker's protocol messages. An *os.File (a pipe)
	// is read with a short spin before each blocking read, which halves a
	// warm invocation's round trip.
	Stdout() io.ReadCloser
	// Stderr carries the worker's log lines.
	Stderr() io.ReadCloser
	// Wait blocks until the process ended and says how; it is called once.
	Wait() ProcState
	// Kill kills the process and all it started. Safe to call at any
	// time, and more than once.
	Kill()
	// CPUTime returns the CPU time the process used so far, or -1 when
	// unknown.
	CPUTime() time.Duration
	// PeakMemory returns the process's memory high-water mark, or 0 when
	// unknown.
	PeakMemory() int64
	// OOMKills returns how many processes were killed for exceeding the
	// memory limit, or -1 when unknown.
	OOMKills() int
	// Release frees what remains of the process after Wait (a cgroup, a
	// container), retrying for up to wait.
	Release(wait time.Duration) error
}

// ProcState is how a Proc ended.
type ProcState struct {
	Exited      bool           // it exited with Code
	Code        int            // its exit status, when Exited
	Signal      syscall.Signal // it was killed by Signal (Exited false)
	SetupFailed bool           // its sandbox could not be set up before it ran
	OOMKilled   bool           // killed for exceeding its memory limit (docker's State.OOMKilled)
	// OOMReason, with OOMKilled, says how the driver itself found the
	// process out of memory (thrashing at its limit) and killed it.
	OOMReason string
	Err       error // waiting failed: the process was lost
	// RunnerLost says that Err is the runner's failure, not the
	// process's: the runner lost track of it (a Docker Engine that went
	// away). Its invocations end with outcome Error and an error, and it
	// does not count as a crash of the service.
	RunnerLost bool
}

// writeDeadliner is a Proc's standard input that can bound a write in
// time (an *os.File pipe, a network connection).
type writeDeadliner interface {
	SetWriteDeadline(t time.Time) error
}

// PoolConfig is a deployment of workers another driver starts.
type PoolConfig struct {
	// Config holds the protocol and pool settings: MaxLine, MaxLog,
	// Timeout, Concurrency, StartTimeout, CancelGrace, Backoff,
	// MaxBackoff, UnhealthyAfter and Logger. Zero fields take their
	// defaults; the sandbox settings are not used.
	Config Config
	// Spec is the service: Service (default "service"), Mode (default
	// server), Limits.Timeout and Limits.Concurrency (the pool's size in
	// server mode; zero: Config's), and Log.
	Spec sandbox.Spec
	// Module is the module the init message names.
	Module worker.Module
	// Capacity is how many invocations a server-mode worker is sent at
	// once (the init's max_in_flight); 0: the pool's size, as the process
	// driver does. A command-mode worker takes one.
	Capacity int
	// Start starts one worker process. ctx bounds the start only, not the
	// life of the process. An error is the runner's failure to start it,
	// not the service's.
	Start func(ctx context.Context) (Proc, error)
}

// poolShape is what a PoolConfig deploys, its defaults applied.
type poolShape struct {
	cfg      Config
	name     string
	mode     sandbox.Mode
	timeout  time.Duration
	poolSize int
	capacity int
}

// shape applies pc's defaults.
func (pc PoolConfig) shape() poolShape {
	s := poolShape{cfg: pc.Config.withDefaults(), name: pc.Spec.Service, mode: pc.Spec.Mode,
		timeout: pc.Spec.Limits.Timeout, poolSize: pc.Spec.Limits.Concurrency}
	if s.name == "" {
		s.name = "service"
	}
	if s.mode == "" {
		s.mode = sandbox.ModeServer
	}
	if s.timeout <= 0 {
		s.timeout = s.cfg.Timeout
	}
	if s.poolSize <= 0 {
		s.poolSize = s.cfg.Concurrency
	}
	s.capacity = s.poolSize
	if pc.Capacity > 0 {
		s.capacity = pc.Capacity
	}
	if s.mode == sandbox.ModeCommand {
		s.capacity = 1
	}
	return s
}

// check reports what in pc a pool cannot run, naming the field.
func (pc PoolConfig) check() error {
	var errs []error
	if pc.Start == nil {
		errs = append(errs, errors.New("start: must be set"))
	}
	if pc.Capacity < 0 {
		errs = append(errs, fmt.Errorf("capacity: must not be negative, got %d", pc.Capacity))
	}
	if m := pc.Spec.Mode; m != "" && m != sandbox.ModeServer && m != sandbox.ModeCommand {
		errs = append(errs, fmt.Errorf("%w: mode %q", sandbox.ErrUnsupported, m))
	}
	if err := pc.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// InitMessage is the init message (without newline) a pool of spec and
// module sends its workers first; its max_in_flight follows spec.Mode.
func InitMessage(pc PoolConfig) []byte {
	s := pc.shape()
	init, err := json.Marshal(worker.Message{
		Type: worker.TypeInit, ID: "init", Protocol: worker.Version, MaxProtocol: worker.RouteVersion, Service: s.name,
		Modules: []worker.Module{pc.Module}, Config: json.RawMessage(`{}`),
		MaxLine: s.cfg.MaxLine, MaxInFlight: s.capacity,
	})
	if err != nil {
		// A Module is strings only: it always encodes.
		panic(fmt.Sprintf("encode init message: %v", err))
	}
	return init
}

// NewRawWorker wraps a started Proc as the conformance kit's raw worker
// (sandbox.RawStarter), with init as its Init. Its Wait waits for the
// process, closes its streams and releases it.
func NewRawWorker(p Proc, init []byte) *sandbox.RawWorker {
	var once sync.Once
	var status int
	var how string
	stdin, stdout, stderr := p.Stdin(), p.Stdout(), p.Stderr()
	return &sandbox.RawWorker{
		Init:   init,
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Wait: func() (int, string) {
			once.Do(func() {
				status, how = rawStatus(p.Wait())
				stdin.Close()
				stdout.Close()
				stderr.Close()
				_ = p.Release(2 * time.Second)
			})
			return status, how
		},
		Kill: p.Kill,
	}
}

// rawStatus is a RawWorker's Wait result for s: the exit status, or -1
// and how the process ended otherwise.
func rawStatus(s ProcState) (int, string) {
	switch {
	case s.Err != nil:
		return -1, fmt.Sprintf("lost: %v", s.Err)
	case s.Exited:
		return s.Code, fmt.Sprintf("exited with status %d", s.Code)
	case s.Signal != 0:
		return -1, fmt.Sprintf("killed by signal %d (%v)", int(s.Signal), s.Signal)
	case s.SetupFailed:
		return -1, "sandbox set-up failed"
	}
	return -1, "ended without an exit status"
}
