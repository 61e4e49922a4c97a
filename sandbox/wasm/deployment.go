package wasm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// deployment is one compiled module ready to be invoked. Safe for concurrent
// use: each invocation has an instance of its own.
type deployment struct {
	driver    *Driver
	name      string
	shape     shape
	pooled    bool // server-mode reactor: instances are kept warm and reused
	compiled  wazero.CompiledModule
	base      wazero.ModuleConfig
	memLimit  uint64
	timeout   time.Duration
	poolSize  int
	maxOutput int
	maxLog    int

	// created counts instantiations, for tests of the pool.
	created atomic.Int64

	mu      sync.Mutex
	idle    []*instance // warm reactor instances, at most poolSize
	stopped bool
	calls   sync.WaitGroup // invocations in flight; Add only under mu while !stopped

	// killCtx is cancelled when Stop runs out of grace; every invocation
	// registers its cancel function on it with context.AfterFunc.
	killCtx  context.Context
	kill     context.CancelFunc
	stopDone chan struct{} // closed when Stop has released everything
	stopErr  error
}

var _ sandbox.Deployment = (*deployment)(nil)

// Invoke runs one invocation. The earlier of ctx's deadline and the
// deployment's timeout stops the guest (Outcome Timeout); cancelling ctx
// stops it too and returns ctx's error, and so does a Stop that runs out of
// grace (sandbox.ErrStopped). Invoke after Stop returns sandbox.ErrStopped.
// Usage.CPU is the wall time of the guest call (a guest has one thread) and
// Usage.PeakMemory the size of its linear memory after the call (a linear
// memory never shrinks).
func (d *deployment) Invoke(ctx context.Context, input []byte) (sandbox.Exit, error) {
	start := time.Now()
	d.mu.Lock()
	stopped := d.stopped
	d.mu.Unlock()
	if done, exit, err := sandbox.Precheck(ctx, d.name, stopped); done {
		return exit, err
	}
	switch {
	case uint64(len(input)) > 1<<32-1:
		return sandbox.Exit{}, fmt.Errorf("invoke %s: %w: %d bytes of input, more than a 32-bit guest can address", d.name, sandbox.ErrInput, len(input))
	}

	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return sandbox.Exit{}, fmt.Errorf("invoke %s: %w", d.name, sandbox.ErrStopped)
	}
	d.calls.Add(1)
	var inst *instance
	if n := len(d.idle); n > 0 {
		inst = d.idle[n-1]
		d.idle = d.idle[:n-1]
	}
	d.mu.Unlock()
	defer d.calls.Done()

	callCtx, cancel := context.WithTimeout(ctx, d.timeout)
	stopKill := context.AfterFunc(d.killCtx, cancel)
	var exit sandbox.Exit
	var keep bool
	var err error
	if d.shape == command {
		exit, inst, err = d.runCommand(callCtx, input)
	} else {
		exit, inst, keep, err = d.runReactor(callCtx, inst, input)
	}
	stopKill()
	cancel()

	exit.Usage.Wall = time.Since(start)
	exit.Usage.CPU = exit.Usage.Wall
	if inst != nil {
		exit.Usage.PeakMemory = int64(inst.mem.size)
		if keep && d.pooled {
			d.release(inst)
		} else {
			inst.close()
		}
	}
	if err != nil {
		return exit, fmt.Errorf("invoke %s: %w", d.name, err)
	}
	return exit, nil
}

// release returns a healthy reactor instance to the pool, or closes it when
// the pool is full or the deployment stopped.
func (d *deployment) release(inst *instance) {
	d.mu.Lock()
	if !d.stopped && len(d.idle) < d.poolSize {
		d.idle = append(d.idle, inst)
		inst = nil
	}
	d.mu.Unlock()
	if inst != nil {
		inst.close()
	}
}

// runCommand runs a command guest in a fresh instance with input on stdin.
func (d *deployment) runCommand(ctx context.Context, input []byte) (sandbox.Exit, *instance, error) {
	inst, err := d.start(ctx, input)
	if err != nil {
		exit, err := d.failure(ctx, inst, "_start", err)
		return exit, inst, err
	}
	if inst.out.over {
		return sandbox.Exit{Outcome: sandbox.Crashed, Detail: d.detail(inst, fmt.Sprintf("output exceeds the limit of %d bytes", d.maxOutput))}, inst, nil
	}
	return sandbox.Exit{Outcome: sandbox.OK, Output: inst.out.buf, Detail: inst.logs.String()}, inst, nil
}

// start instantiates the module and runs its WASI entry point: _start for a
// command (to completion), _initialize for a reactor when it has one. An
// error comes with the instance when the guest's code ran, for failure.
func (d *deployment) start(ctx context.Context, stdin []byte) (*instance, error) {
	inst, err := d.instantiate(ctx, stdin)
	if err != nil {
		return nil, err
	}
	d.created.Add(1)
	inst.done = ctx.Done()
	entry := "_start"
	if d.shape == reactor {
		entry = "_initialize"
	}
	if fn := inst.mod.ExportedFunction(entry); fn != nil {
		_, err = fn.Call(ctx)
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 0 && d.shape == command {
			err = nil // proc_exit(0) is how a WASI command ends successfully
		}
	}
	return inst, err
}

// runReactor serves one invocation through the reactor ABI, on inst or, when
// inst is nil, on a new instance. keep reports whether the instance is
// healthy enough to serve another invocation.
func (d *deployment) runReactor(ctx context.Context, inst *instance, input []byte) (exit sandbox.Exit, _ *instance, keep bool, err error) {
	if inst == nil {
		if inst, err = d.start(ctx, nil); err != nil {
			exit, err = d.failure(ctx, inst, "_initialize", err)
			return exit, inst, false, err
		}
	} else {
		inst.done = ctx.Done()
		inst.logs.reset()
		inst.mem.refused = false
	}

	size := uint32(len(input))
	inst.stack[0] = uint64(size)
	if err := inst.alloc.CallWithStack(ctx, inst.stack); err != nil {
		exit, err = d.failure(ctx, inst, exportAlloc, err)
		return exit, inst, false, err
	}
	ptr := uint32(inst.stack[0])
	if !inst.memory.Write(ptr, input) {
		return d.crashed(inst, fmt.Sprintf("%s(%d) returned %#x: not a buffer inside the guest's memory", exportAlloc, size, ptr)), inst, false, nil
	}
	inst.stack[0], inst.stack[1] = uint64(ptr), uint64(size)
	if err := inst.invoke.CallWithStack(ctx, inst.stack); err != nil {
		exit, err = d.failure(ctx, inst, exportInvoke, err)
		return exit, inst, false, err
	}
	outPtr, outLen := uint32(inst.stack[0]>>32), uint32(inst.stack[0])
	if int64(outLen) > int64(d.maxOutput) {
		return d.crashed(inst, fmt.Sprintf("output of %d bytes exceeds the limit of %d bytes", outLen, d.maxOutput)), inst, true, nil
	}
	out, ok := inst.memory.Read(outPtr, outLen)
	if !ok {
		return d.crashed(inst, fmt.Sprintf("%s returned output at %#x+%d: outside the guest's memory", exportInvoke, outPtr, outLen)), inst, false, nil
	}
	exit = sandbox.Exit{Outcome: sandbox.OK, Output: append([]byte(nil), out...)}
	if !inst.logs.empty() {
		exit.Detail = inst.logs.String()
	}
	return exit, inst, true, nil
}

// failure classifies an error from guest code: stopped by Stop (error
// sandbox.ErrStopped), cancelled by the caller (error ctx.Err()), past its
// deadline (Timeout), out of memory (OOM: a grow was refused, or the memory
// reached the module's own maximum), or crashed (trap or non-zero exit).
func (d *deployment) failure(ctx context.Context, inst *instance, phase string, err error) (sandbox.Exit, error) {
	var exit *sys.ExitError
	isExit := errors.As(err, &exit)
	if isExit && (exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled) || ctx.Err() != nil {
		switch {
		case d.killCtx.Err() != nil:
			return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "stopped with its deployment"}, sandbox.ErrStopped
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return sandbox.Exit{Outcome: sandbox.Timeout, Detail: d.detail(inst, "stopped at the deadline")}, nil
		case ctx.Err() != nil:
			return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "cancelled"}, ctx.Err()
		}
	}
	if inst == nil {
		// The module could not be instantiated: no guest code ran.
		return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "instantiate: " + err.Error()}, nil
	}
	if inst.mem.refused || inst.atMax() {
		return sandbox.Exit{Outcome: sandbox.OOM, Detail: d.detail(inst, fmt.Sprintf("memory limit of %s reached", sizeString(d.memLimit)))}, nil
	}
	if isExit {
		return d.crashed(inst, fmt.Sprintf("exit status %d in %s", exit.ExitCode(), phase)), nil
	}
	// A trap's message is one line and then the wasm stack trace; the
	// guest's own words (stderr) go between the two.
	msg, trace, _ := strings.Cut(err.Error(), "\n")
	detail := d.detail(inst, fmt.Sprintf("trap in %s: %s", phase, msg))
	if len(trace) > 2048 {
		trace = trace[:2048] + "..."
	}
	if trace != "" {
		detail += "\n" + trace
	}
	return sandbox.Exit{Outcome: sandbox.Crashed, Detail: detail}, nil
}

// atMax reports whether the guest's memory reached the module's own
// declared maximum, where memory.grow fails without asking the allocator.
func (inst *instance) atMax() bool {
	for _, m := range inst.mod.ExportedMemoryDefinitions() {
		if limit, declared := m.Max(); declared && inst.mem.size >= uint64(limit)*pageSize {
			return true
		}
	}
	return false
}

func (d *deployment) crashed(inst *instance, why string) sandbox.Exit {
	return sandbox.Exit{Outcome: sandbox.Crashed, Detail: d.detail(inst, why)}
}

// detail is why, followed by the tail of the guest's log.
func (d *deployment) detail(inst *instance, why string) string {
	if inst == nil {
		return why
	}
	if s := inst.logs.String(); s != "" {
		return why + "\nstderr:\n" + s
	}
	return why
}

func sizeString(n uint64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}

// Stop refuses new invocations, waits for those in flight until ctx is done,
// then stops them (they return sandbox.ErrStopped), and releases every
// instance and the compiled module. Safe to call more than once and from
// several goroutines; later calls wait for the first to finish or for their
// own ctx.
func (d *deployment) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		select {
		case <-d.stopDone:
			return d.stopErr
		case <-ctx.Done():
			return nil
		}
	}
	d.stopped = true
	d.stopDone = make(chan struct{})
	idle := d.idle
	d.idle = nil
	d.mu.Unlock()

	for _, inst := range idle {
		inst.close()
	}
	drained := make(chan struct{})
	go func() {
		d.calls.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		d.kill()
		<-drained // a stopped guest returns at its next function entry or loop
	}
	d.kill()
	if err := d.compiled.Close(context.Background()); err != nil {
		d.stopErr = fmt.Errorf("stop %s: %w", d.name, err)
	}
	d.driver.forget(d)
	close(d.stopDone)
	return d.stopErr
}
