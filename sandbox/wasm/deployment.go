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
	memMax    uint64 // the memory's declared maximum in bytes, when ownMax
	ownMax    bool   // the module declares a maximum below memLimit
	reserve   int64  // bytes of the node's memory budget one instance holds
	timeout   time.Duration
	poolSize  int
	maxOutput int
	maxLog    int
	vols      *volumes            // the preopened volumes; nil without any
	logs      *sandbox.LogLimiter // nil: the guest's lines go nowhere but Exit.Detail

	// created counts instantiations, for tests of the pool.
	created atomic.Int64

	// onPhase, when set (by tests), is called as an invocation enters each
	// phase: "instantiate", "_start", "_initialize", "andromeda_alloc",
	// "andromeda_invoke".
	onPhase func(phase string)

	mu        sync.Mutex
	idle      []*instance // warm reactor instances, at most poolSize
	stopped   bool
	lastPanic string         // the driver panic that ended the latest invocation, if it did
	calls     sync.WaitGroup // invocations in flight; Add only under mu while !stopped

	// killCtx is cancelled when Stop runs out of grace; every invocation
	// registers its cancel function on it with context.AfterFunc.
	killCtx  context.Context
	kill     context.CancelFunc
	stopDone chan struct{} // closed when Stop has released everything
	stopErr  error
}

var (
	_ sandbox.Deployment     = (*deployment)(nil)
	_ sandbox.HealthReporter = (*deployment)(nil)
)

// Invoke runs one invocation. The earlier of ctx's deadline and the
// deployment's timeout stops the guest (Outcome Timeout); cancelling ctx
// stops it too and returns ctx's error, and so does a Stop that runs out of
// grace (sandbox.ErrStopped). Invoke after Stop returns sandbox.ErrStopped.
// An invocation that needs a new instance waits, within the same deadline,
// for the node's memory budget; if the deadline passes first it ends with
// Outcome Skipped, the guest never having run. A panic inside the driver
// ends the invocation with Outcome Crashed and the panic in Exit.Detail; its
// instance is discarded and the deployment stays usable (Health reports the
// panic until an invocation completes without one).
// Usage.CPU is the wall time of the guest call (a guest has one thread) and
// Usage.PeakMemory the size of its linear memory after the call (a linear
// memory never shrinks): MemoryScope "run" on a fresh instance, "worker" on
// a warm one. Usage.Counters are what the guest reported through the
// andromeda.usage host function during the call.
//
// A flow's same-worker route in ctx (sandbox.WithRoute) is walked here
// once the invocation ended ok: each hop is a call of the same
// deployment, on an instance of its pool (sandbox.WalkRoute).
func (d *deployment) Invoke(ctx context.Context, input []byte) (sandbox.Exit, error) {
	exit, err := d.invoke(ctx, input)
	if err == nil && exit.Outcome == sandbox.OK {
		if route, hops := sandbox.RouteOf(ctx); route != nil {
			*hops = append(*hops, sandbox.WalkRoute(ctx, route, input, exit.Output, d.invoke)...)
		}
	}
	return exit, err
}

// invoke is one invocation, without a route.
func (d *deployment) invoke(ctx context.Context, input []byte) (exit sandbox.Exit, err error) {
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
	fresh := true
	if n := len(d.idle); n > 0 {
		inst = d.idle[n-1]
		d.idle = d.idle[:n-1]
		d.driver.idle.remove(inst)
		fresh = false
	}
	d.mu.Unlock()
	defer d.calls.Done()
	if inst == nil {
		inst = d.newInstance()
	}
	if err := d.vols.measure(); err != nil {
		if fresh || !d.pooled {
			inst.close()
		} else {
			d.release(inst)
		}
		return sandbox.Exit{}, fmt.Errorf("invoke %s: %w", d.name, err)
	}

	callCtx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var counters sandbox.Counters // what the guest reports through andromeda.usage
	callCtx = sandbox.WithCounters(callCtx, &counters)
	stopKill := context.AfterFunc(d.killCtx, cancel)
	defer stopKill()
	defer func() {
		if r := recover(); r != nil {
			// The instance may be half-made or half-run: never reuse it.
			closeAfterPanic(inst)
			why := fmt.Sprintf("driver panic: %v", r)
			d.mu.Lock()
			d.lastPanic = why
			d.mu.Unlock()
			exit, err = sandbox.Exit{Outcome: sandbox.Crashed, Detail: why}, nil
			exit.Usage.Wall = time.Since(start)
			exit.Usage.CPU = exit.Usage.Wall
		}
	}()

	if d.logs != nil {
		run := d.logs.Run(sandbox.RunLogOf(ctx))
		inst.logs.lines = &lineSplitter{run: run}
		defer run.End()
	}
	var keep bool
	if d.shape == command {
		exit, err = d.runCommand(callCtx, inst, input)
	} else {
		exit, keep, err = d.runReactor(callCtx, inst, fresh, input)
	}
	stopKill()
	cancel()
	d.mu.Lock()
	d.lastPanic = ""
	d.mu.Unlock()

	exit.Usage.Wall = time.Since(start)
	exit.Usage.CPU = exit.Usage.Wall
	exit.Usage.PeakMemory = int64(inst.mem.size)
	if exit.Usage.PeakMemory > 0 {
		// A fresh instance served this invocation alone; a warm one's
		// memory never shrinks, so its size covers every invocation since
		// it was instantiated.
		exit.Usage.MemoryScope = sandbox.MemoryRun
		if !fresh {
			exit.Usage.MemoryScope = sandbox.MemoryWorker
		}
	}
	counters.Fill(&exit.Usage)
	if inst.logs.lines != nil {
		inst.logs.lines.flush()
		inst.logs.lines = nil
	}
	if keep && d.pooled {
		d.release(inst)
	} else {
		inst.close()
	}
	if err != nil {
		return exit, fmt.Errorf("invoke %s: %w", d.name, err)
	}
	return exit, nil
}

// closeAfterPanic closes an instance after a driver panic; a second panic,
// from an instance left inconsistent, is dropped.
func closeAfterPanic(inst *instance) {
	defer func() { _ = recover() }()
	inst.close()
}

// Health implements sandbox.HealthReporter: a deployment is unhealthy
// while its latest invocation ended in a driver panic.
func (d *deployment) Health() (healthy bool, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastPanic != "" {
		return false, "the latest invocation ended in a " + d.lastPanic
	}
	return true, ""
}

// release returns a healthy reactor instance to the pool, or closes it when
// the pool is full, the deployment stopped, or another instantiation waits
// for the memory it holds.
func (d *deployment) release(inst *instance) {
	if !d.driver.budget.waiting() {
		d.mu.Lock()
		if !d.stopped && len(d.idle) < d.poolSize {
			d.idle = append(d.idle, inst)
			d.driver.idle.push(d, inst)
			inst = nil
		}
		d.mu.Unlock()
	}
	if inst != nil {
		inst.close()
	}
}

// runCommand runs a command guest in inst, a fresh instance, with input on
// stdin.
func (d *deployment) runCommand(ctx context.Context, inst *instance, input []byte) (sandbox.Exit, error) {
	if err := d.start(ctx, inst, input); err != nil {
		return d.failure(ctx, inst, "_start", err)
	}
	if inst.out.over {
		return sandbox.Exit{Outcome: sandbox.Crashed, Detail: d.detail(inst, fmt.Sprintf("output exceeds the limit of %d bytes", d.maxOutput))}, nil
	}
	return sandbox.Exit{Outcome: sandbox.OK, Output: inst.out.buf, Detail: inst.logs.String()}, nil
}

// start instantiates inst and runs its WASI entry point: _start for a
// command (to completion), _initialize for a reactor when it has one.
func (d *deployment) start(ctx context.Context, inst *instance, stdin []byte) error {
	d.phase("instantiate")
	if err := d.instantiate(ctx, inst, stdin); err != nil {
		return err
	}
	d.created.Add(1)
	entry := "_start"
	if d.shape == reactor {
		entry = "_initialize"
	}
	var err error
	if fn := inst.mod.ExportedFunction(entry); fn != nil {
		d.phase(entry)
		_, err = fn.Call(ctx)
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 0 && d.shape == command {
			err = nil // proc_exit(0) is how a WASI command ends successfully
		}
	}
	return err
}

// phase calls the test hook, if any, as an invocation enters phase.
func (d *deployment) phase(name string) {
	if d.onPhase != nil {
		d.onPhase(name)
	}
}

// runReactor serves one invocation through the reactor ABI on inst, which
// is fresh (not yet instantiated) or warm from the pool. keep reports
// whether the instance is healthy enough to serve another invocation.
func (d *deployment) runReactor(ctx context.Context, inst *instance, fresh bool, input []byte) (exit sandbox.Exit, keep bool, err error) {
	if fresh {
		if err = d.start(ctx, inst, nil); err != nil {
			exit, err = d.failure(ctx, inst, "_initialize", err)
			return exit, false, err
		}
	} else {
		inst.done = ctx.Done()
		inst.logs.reset()
		inst.mem.refused = false
	}

	size := uint32(len(input))
	inst.stack[0] = uint64(size)
	d.phase(exportAlloc)
	if err := inst.alloc.CallWithStack(ctx, inst.stack); err != nil {
		exit, err = d.failure(ctx, inst, exportAlloc, err)
		return exit, false, err
	}
	ptr := uint32(inst.stack[0])
	if !inst.memory.Write(ptr, input) {
		return d.crashed(inst, fmt.Sprintf("%s(%d) returned %#x: not a buffer inside the guest's memory", exportAlloc, size, ptr)), false, nil
	}
	inst.stack[0], inst.stack[1] = uint64(ptr), uint64(size)
	d.phase(exportInvoke)
	if err := inst.invoke.CallWithStack(ctx, inst.stack); err != nil {
		exit, err = d.failure(ctx, inst, exportInvoke, err)
		return exit, false, err
	}
	outPtr, outLen := uint32(inst.stack[0]>>32), uint32(inst.stack[0])
	if int64(outLen) > int64(d.maxOutput) {
		return d.crashed(inst, fmt.Sprintf("output of %d bytes exceeds the limit of %d bytes", outLen, d.maxOutput)), true, nil
	}
	out, ok := inst.memory.Read(outPtr, outLen)
	if !ok {
		return d.crashed(inst, fmt.Sprintf("%s returned output at %#x+%d: outside the guest's memory", exportInvoke, outPtr, outLen)), false, nil
	}
	exit = sandbox.Exit{Outcome: sandbox.OK, Output: append([]byte(nil), out...)}
	if !inst.logs.empty() {
		exit.Detail = inst.logs.String()
	}
	return exit, true, nil
}

// failure classifies an error from guest code or from getting an instance:
// stopped by Stop (error sandbox.ErrStopped), cancelled by the caller (error
// ctx.Err()), no memory in the node's budget before the deadline (Skipped),
// past its deadline (Timeout), out of memory (OOM: a grow was refused, or
// the memory reached the module's own maximum), or crashed (trap or non-zero
// exit).
func (d *deployment) failure(ctx context.Context, inst *instance, phase string, err error) (sandbox.Exit, error) {
	var exit *sys.ExitError
	var wait *budgetError
	isExit := errors.As(err, &exit)
	if isExit && (exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled) || ctx.Err() != nil {
		switch {
		case d.killCtx.Err() != nil:
			return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "stopped with its deployment"}, sandbox.ErrStopped
		case errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.As(err, &wait):
			return sandbox.Exit{Outcome: sandbox.Skipped, Detail: wait.Error()}, nil
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return sandbox.Exit{Outcome: sandbox.Timeout, Detail: d.detail(inst, "stopped at the deadline")}, nil
		case ctx.Err() != nil:
			return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "cancelled"}, ctx.Err()
		}
	}
	if inst.mod == nil {
		// The module could not be instantiated. Its start function may
		// have run: say what it logged.
		return sandbox.Exit{Outcome: sandbox.Crashed, Detail: d.detail(inst, "instantiate: "+err.Error())}, nil
	}
	if inst.mem.refused || d.atMax(inst) {
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

// atMax reports whether the guest's memory, exported or not, reached the
// module's own declared maximum below the limit, where memory.grow fails
// without asking the allocator.
func (d *deployment) atMax(inst *instance) bool {
	return d.ownMax && inst.mem.size >= d.memMax
}

func (d *deployment) crashed(inst *instance, why string) sandbox.Exit {
	return sandbox.Exit{Outcome: sandbox.Crashed, Detail: d.detail(inst, why)}
}

// detail is why, followed by the tail of the guest's log.
func (d *deployment) detail(inst *instance, why string) string {
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
	for _, inst := range idle {
		d.driver.idle.remove(inst)
	}
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
	d.vols.close()
	if d.logs != nil {
		d.logs.Close()
	}
	if err := d.compiled.Close(context.Background()); err != nil {
		d.stopErr = fmt.Errorf("stop %s: %w", d.name, err)
	}
	d.driver.forget(d)
	close(d.stopDone)
	return d.stopErr
}
