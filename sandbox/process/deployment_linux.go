package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// deployment is one service on the process driver, or on another driver
// through NewPool: a pool of warm workers in server mode, a fresh worker
// per invocation in command mode. Safe for concurrent use.
type deployment struct {
	cfg      Config // the protocol and pool settings, defaults applied
	name     string
	mode     sandbox.Mode
	spawn    func(ctx context.Context) (Proc, error) // starts a worker process
	init     []byte                                  // the init message, with its newline
	onStop   func()                                  // called when Stop is done; nil: nothing
	timeout  time.Duration
	poolSize int
	capacity int // invocations in flight per worker
	log      func(string)
	msgs     messageCounts // protocol messages to and from its workers

	logsOnce sync.Once
	logs     *sandbox.LogLimiter // in front of log: see limiter

	spawned atomic.Int64 // workers started, for tests

	mu       sync.Mutex
	slots    []*workerProc // server mode: the worker of each pool slot, nil while it restarts
	live     map[*workerProc]struct{}
	starting int // workers spawned and not yet ready
	changed  chan struct{}
	waiters  int
	crashes  int    // consecutive worker crashes
	lastWhy  string // the last crash, first line
	stopped  bool
	spare    *spare // command mode: the worker Prewarm prepared for the next invocation
	timers   map[*time.Timer]struct{}
	bg       sync.WaitGroup // restarts and command-mode invocations; Add only under mu while !stopped
	stopDone chan struct{}
	stopErr  error
}

var (
	_ sandbox.Deployment = (*deployment)(nil)
	_ sandbox.Prewarmer  = (*deployment)(nil)
)

// spare is a command-mode worker started ahead of the invocation it
// serves (Prewarm). ready is closed once w or err is set.
type spare struct {
	ready chan struct{}
	w     *workerProc
	err   error
}

// notify wakes the invocations waiting for a worker. Called with d.mu held.
func (d *deployment) notify() {
	if d.waiters > 0 {
		close(d.changed)
		d.changed = make(chan struct{})
	}
}

// spawnError is a failure of the runner to start a sandbox (no process,
// no cgroup), as opposed to a worker that started and failed.
type spawnError struct{ err error }

func (e spawnError) Error() string { return e.err.Error() }
func (e spawnError) Unwrap() error { return e.err }

// newWorker starts one worker and waits until it is ready, within
// Config.StartTimeout. A failure to start its process is a spawnError.
func (d *deployment) newWorker(ctx context.Context) (*workerProc, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	p, err := d.spawn(ctx)
	if err != nil {
		return nil, spawnError{err}
	}
	d.spawned.Add(1)
	w := startWorker(p, d.name, d.limiter(), d.cfg.MaxLine, d.cfg.MaxLog, d.capacity, d.cfg.CancelGrace, d.init, d.answered, d.died, &d.msgs)
	d.mu.Lock()
	d.live[w] = struct{}{}
	d.starting++
	stopped := d.stopped
	d.mu.Unlock()
	if stopped {
		// Its start was under way when Stop looked for workers to stop (a
		// restart, a command-mode invocation): it ends at once, rather
		// than after its start or its invocation.
		w.kill(killStop, false)
	}
	go func() {
		<-w.done
		d.mu.Lock()
		delete(d.live, w)
		d.mu.Unlock()
	}()

	err = w.waitReady(ctx)
	d.mu.Lock()
	d.starting--
	d.notify()
	d.mu.Unlock()
	if err != nil {
		w.kill("it did not start", false)
		if ctx.Err() != nil {
			// The deadline ended the start: the caller is answered now.
			// The worker ends and is released in the background (a
			// container's removal can take a second on a loaded engine);
			// it stays live until then, so Stop still waits for it.
			return nil, err
		}
		<-w.done
		if w.exit.detail != "" && !strings.Contains(err.Error(), w.exit.detail) {
			err = fmt.Errorf("%w\n%s", err, w.exit.detail)
		}
		return nil, err
	}
	return w, nil
}

// limiter returns the deployment's log limiter: every line its workers
// write to standard error or in log messages passes it on the way to
// Spec.Log (or to the run's own sink, sandbox.WithRunLog), within
// sandbox.DefaultLogLimit: 256 KiB per run, 8 MiB per service and hour,
// 100 lines a second after a burst of 1000, lines cut at 4 KiB.
func (d *deployment) limiter() *sandbox.LogLimiter {
	d.logsOnce.Do(func() { d.logs = sandbox.NewLogLimiter(sandbox.DefaultLogLimit(), d.log) })
	return d.logs
}

// WorkersStarted returns how many worker processes dep, a deployment of
// this driver, has started, restarts included, or -1 for another driver's.
// The conformance kit (`andromeda conformance`) notes with it a runtime
// whose worker dies where it should live on: a thrown error, a cancel.
func WorkersStarted(dep sandbox.Deployment) int64 {
	if d, ok := dep.(*deployment); ok {
		return d.spawned.Load()
	}
	return -1
}

// answered is called when a worker answers an invocation: the service
// works, so the crash count starts over.
func (d *deployment) answered() {
	d.mu.Lock()
	d.crashes = 0
	d.notify()
	d.mu.Unlock()
}

// start fills the pool (server mode) or checks that one worker starts
// (command mode); a worker that does not start fails the deployment.
func (d *deployment) start(ctx context.Context) error {
	if d.mode == sandbox.ModeCommand {
		w, err := d.newWorker(ctx)
		if err != nil {
			return err
		}
		d.retire(w)
		return nil
	}
	errs := make([]error, d.poolSize)
	var wg sync.WaitGroup
	for i := range d.poolSize {
		wg.Go(func() {
			w, err := d.newWorker(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			d.mu.Lock()
			d.place(i, w)
			d.mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// place puts w into slot, or, when it already died, handles its death.
// Called with d.mu held.
func (d *deployment) place(slot int, w *workerProc) {
	w.mu.Lock()
	dead := w.dead
	w.mu.Unlock()
	if dead {
		d.restart(slot, w)
		return
	}
	d.slots[slot] = w
	d.notify()
}

// died is every worker's onDeath: it runs when the worker has been reaped,
// before its invocations learn of it, so that an invocation that crashed
// finds the crash already counted. A worker of the pool is restarted.
func (d *deployment) died(w *workerProc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for slot, sw := range d.slots {
		if sw == w {
			d.slots[slot] = nil
			d.restart(slot, w)
			return
		}
	}
}

// restart schedules the restart of slot, whose worker w died: at once when
// the driver killed it, after a backoff when it crashed. Called with d.mu
// held.
func (d *deployment) restart(slot int, w *workerProc) {
	d.notify()
	if d.stopped {
		return
	}
	delay := time.Duration(0)
	switch {
	case w.exit.runner != nil:
		// The runner lost it: no crash of the service; the restart waits
		// a backoff, for the runner to recover.
		delay = backoff(d.cfg.Backoff, d.cfg.MaxBackoff, 1)
		d.cfg.Logger.Warn("worker lost by its runner", "service", d.name, "error", w.exit.runner.Error(), "restart_in", delay)
	case !w.exit.driver:
		delay = d.crashed(w)
		d.cfg.Logger.Warn("worker crashed", "service", d.name, "outcome", string(w.exit.outcome),
			"detail", firstLine(w.exit.detail), "restart_in", delay, "consecutive", d.crashes)
	}
	d.restartAfter(slot, delay)
}

// crashed counts a crash of w and returns the delay before its restart:
// Backoff doubled per consecutive crash, capped at MaxBackoff, with ±50 %
// jitter. A worker that ran for a minute first starts the count over.
// Called with d.mu held.
func (d *deployment) crashed(w *workerProc) time.Duration {
	if time.Since(w.started) > time.Minute {
		d.crashes = 0
	}
	d.crashes++
	d.lastWhy = firstLine(w.exit.detail)
	return backoff(d.cfg.Backoff, d.cfg.MaxBackoff, d.crashes)
}

// backoff is base·2^(n-1), capped at limit, times a random factor in [0.5, 1.5).
func backoff(base, limit time.Duration, n int) time.Duration {
	delay := base
	for i := 1; i < n && delay < limit; i++ {
		delay *= 2
	}
	delay = min(delay, limit)
	return time.Duration(float64(delay) * (0.5 + rand.Float64()))
}

// restartAfter starts a new worker in slot after delay. Called with d.mu held.
func (d *deployment) restartAfter(slot int, delay time.Duration) {
	d.bg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		defer d.bg.Done()
		d.mu.Lock()
		delete(d.timers, t)
		stopped := d.stopped
		d.mu.Unlock()
		if stopped {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StartTimeout)
		w, err := d.newWorker(ctx)
		cancel()
		d.mu.Lock()
		defer d.mu.Unlock()
		switch {
		case err != nil && d.stopped:
		case err != nil:
			d.crashes++
			d.lastWhy = firstLine(err.Error())
			next := backoff(d.cfg.Backoff, d.cfg.MaxBackoff, d.crashes)
			d.cfg.Logger.Warn("worker restart failed", "service", d.name, "error", d.lastWhy, "restart_in", next, "consecutive", d.crashes)
			d.restartAfter(slot, next)
		case d.stopped:
			w.kill(killStop, false)
		default:
			d.place(slot, w)
		}
	})
	d.timers[t] = struct{}{}
}

// Health reports whether the deployment's workers keep running: false after
// Config.UnhealthyAfter consecutive crashes (workers dying, or failing to
// start, without answering an invocation in between), with the reason. A
// worker answering an invocation makes the deployment healthy again.
func (d *deployment) Health() (healthy bool, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.crashes < d.cfg.UnhealthyAfter {
		return true, ""
	}
	return false, fmt.Sprintf("crash loop: %d consecutive worker crashes; last: %s", d.crashes, d.lastWhy)
}

// Invoke runs one invocation on a warm worker (server mode) or a fresh one
// (command mode). See sandbox.Deployment for the meaning of ctx; the
// earlier of its deadline and the deployment's timeout is the invocation's.
// On a deadline or cancellation the worker gets a cancel message and, if
// the invocation has not ended within Config.CancelGrace (at once in
// command mode), its whole process group is killed. A server-mode
// deployment that is unhealthy and has no worker left fails at once with
// outcome Crashed instead of waiting for a restart.
//
// Usage: Wall is the time in Invoke; CPU is the CPU time the worker's
// cgroup used since the worker's previous invocation ended (exact for one
// invocation at a time; with several in flight on one worker, each sees
// the worker's total); PeakMemory is the worker's memory high-water mark
// so far (its cgroup's), an upper bound of the invocation's, with
// MemoryScope "worker" in server mode and "run" in command mode. Counters
// are the sums of the invocation's usage messages.
func (d *deployment) Invoke(ctx context.Context, input []byte) (sandbox.Exit, error) {
	start := time.Now()
	d.mu.Lock()
	stopped := d.stopped
	d.mu.Unlock()
	if done, exit, err := sandbox.Precheck(ctx, d.name, stopped); done {
		return exit, err
	}
	input, err := protocolInput(input, d.cfg.MaxLine)
	if err != nil {
		return sandbox.Exit{}, fmt.Errorf("invoke %s: %w", d.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var exit sandbox.Exit
	if d.mode == sandbox.ModeCommand {
		exit, err = d.invokeFresh(ctx, input)
	} else {
		exit, err = d.invokeWarm(ctx, input)
	}
	exit.Usage.Wall = time.Since(start)
	if exit.Usage.PeakMemory > 0 {
		// A command-mode worker served this invocation alone; a warm one's
		// high-water mark covers every invocation since it started.
		exit.Usage.MemoryScope = sandbox.MemoryWorker
		if d.mode == sandbox.ModeCommand {
			exit.Usage.MemoryScope = sandbox.MemoryRun
		}
	}
	if err != nil {
		return exit, fmt.Errorf("invoke %s: %w", d.name, err)
	}
	return exit, nil
}

// Messages is how many protocol messages the deployment's workers were
// sent and sent back (sandbox.MessageCounter).
func (d *deployment) Messages() (sent, received uint64) {
	return d.msgs.sent.Load(), d.msgs.received.Load()
}

// protocolInput checks that input is one JSON value and returns it on one
// line, the way an invoke message embeds it.
func protocolInput(input []byte, maxLine int) ([]byte, error) {
	if bytes.ContainsAny(input, "\r\n") {
		var b bytes.Buffer
		if err := json.Compact(&b, input); err != nil {
			return nil, fmt.Errorf("%w: %v", sandbox.ErrInput, err)
		}
		input = b.Bytes()
	} else if !json.Valid(input) {
		return nil, fmt.Errorf("%w: not a JSON value", sandbox.ErrInput)
	}
	if len(input)+128 > maxLine {
		return nil, fmt.Errorf("%w: %d bytes, over the protocol's line limit of %d bytes", sandbox.ErrInput, len(input), maxLine)
	}
	return input, nil
}

// invokeWarm runs an invocation on the least busy ready worker of the pool.
func (d *deployment) invokeWarm(ctx context.Context, input []byte) (sandbox.Exit, error) {
	for {
		w, exit, err := d.acquire(ctx)
		if w == nil {
			return exit, err
		}
		exit, err = w.invoke(ctx, input, d.cfg.CancelGrace)
		if errors.Is(err, errRetry) {
			continue
		}
		return exit, err
	}
}

// acquire reserves a slot on the least busy ready worker. It waits for one
// while workers are starting, busy, or a crashed one waits to restart, and
// gives up at ctx's end, at Stop, or at once when the deployment is
// unhealthy and has no worker at all.
func (d *deployment) acquire(ctx context.Context) (*workerProc, sandbox.Exit, error) {
	for {
		d.mu.Lock()
		if d.stopped {
			d.mu.Unlock()
			return nil, sandbox.Exit{}, sandbox.ErrStopped
		}
		var best *workerProc
		bestLoad, alive := 0, 0
		for _, w := range d.slots {
			if w == nil {
				continue
			}
			alive++
			if n, ok := w.load(); ok && (best == nil || n < bestLoad) {
				best, bestLoad = w, n
			}
		}
		if best != nil && best.reserve() {
			d.mu.Unlock()
			return best, sandbox.Exit{}, nil
		}
		if alive == 0 && d.starting == 0 && d.crashes >= d.cfg.UnhealthyAfter {
			why := fmt.Sprintf("service unhealthy: %d consecutive worker crashes, no worker running (last: %s)", d.crashes, d.lastWhy)
			d.mu.Unlock()
			return nil, sandbox.Exit{Outcome: sandbox.Crashed, Detail: why}, nil
		}
		d.waiters++
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		d.mu.Lock()
		d.waiters--
		d.mu.Unlock()
		if err := ctx.Err(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, sandbox.Exit{Outcome: sandbox.Timeout, Detail: "no worker became free before the deadline"}, nil
			}
			return nil, sandbox.Exit{Outcome: sandbox.Crashed, Detail: "cancelled"}, err
		}
	}
}

// invokeFresh runs an invocation on a worker of its own, then retires it.
func (d *deployment) invokeFresh(ctx context.Context, input []byte) (sandbox.Exit, error) {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return sandbox.Exit{}, sandbox.ErrStopped
	}
	d.bg.Add(1) // under mu while not stopped: Stop's Wait sees it
	sp := d.spare
	d.spare = nil
	d.mu.Unlock()
	defer d.bg.Done()
	begin := time.Now()
	w, waited := d.takeSpare(ctx, sp) // reserved for this invocation
	if w == nil {
		var err error
		if w, err = d.newWorker(ctx); err != nil {
			return d.notStarted(ctx, err)
		}
		waited = true
		if !w.reserve() {
			d.retire(w)
			return sandbox.Exit{}, errors.New("fresh worker refused its invocation")
		}
	}
	var cold time.Duration
	if waited {
		cold = time.Since(begin)
	}
	w.mu.Lock()
	w.oneShot = true
	w.mu.Unlock()
	exit, err := w.invoke(ctx, input, 0)
	exit.Usage.Start = cold
	if exit.Outcome == sandbox.Crashed || exit.Outcome == sandbox.OOM {
		d.mu.Lock()
		d.crashes++
		d.lastWhy = firstLine(exit.Detail)
		d.mu.Unlock()
	}
	d.retire(w)
	return exit, err
}

// notStarted is the end of a command-mode invocation whose worker did not
// start with err.
func (d *deployment) notStarted(ctx context.Context, err error) (sandbox.Exit, error) {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return sandbox.Exit{Outcome: sandbox.Timeout, Detail: "the worker did not start before the deadline"}, nil
	case ctx.Err() != nil:
		return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "cancelled"}, ctx.Err()
	}
	d.mu.Lock()
	stopped := d.stopped
	d.mu.Unlock()
	var se spawnError
	switch {
	case stopped:
		return sandbox.Exit{}, sandbox.ErrStopped
	case errors.As(err, &se):
		return sandbox.Exit{Outcome: sandbox.Error, Detail: err.Error()}, err // the runner failed
	}
	d.mu.Lock()
	d.crashes++
	d.lastWhy = firstLine(err.Error())
	d.mu.Unlock()
	return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "worker did not start: " + err.Error()}, nil
}

// takeSpare returns the worker sp prepared, reserved for the invocation,
// waiting within ctx for its start, or nil when there is none to take (no
// spare, its start failed or outlasted ctx, it died meanwhile): the
// invocation then starts its own.
// waited says whether the spare was still starting when it was taken.
func (d *deployment) takeSpare(ctx context.Context, sp *spare) (w *workerProc, waited bool) {
	if sp == nil {
		return nil, false
	}
	select {
	case <-sp.ready:
	default:
		waited = true
		select {
		case <-sp.ready:
		case <-ctx.Done():
			go func() {
				<-sp.ready
				if sp.w != nil {
					d.retire(sp.w)
				}
			}()
			return nil, true
		}
	}
	if sp.w == nil {
		return nil, waited
	}
	if !sp.w.reserve() { // it died while it waited
		d.retire(sp.w)
		return nil, waited
	}
	return sp.w, waited
}

// Prewarm implements sandbox.Prewarmer: in command mode, it starts the
// worker the next invocation takes, within Config.StartTimeout, and keeps
// it for keep; a worker no invocation took by then is shut down. It does
// nothing in server mode, whose workers are warm, or when a spare is
// already prepared or starting. An error says why the worker did not
// start; the invocation that comes then starts its own and reports what
// happens to it.
func (d *deployment) Prewarm(ctx context.Context, keep time.Duration) error {
	if d.mode != sandbox.ModeCommand {
		return nil
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return sandbox.ErrStopped
	}
	if d.spare != nil {
		d.mu.Unlock()
		return nil
	}
	sp := &spare{ready: make(chan struct{})}
	d.spare = sp
	d.bg.Add(1) // under mu while not stopped: Stop's Wait sees it
	d.mu.Unlock()
	defer d.bg.Done()
	w, err := d.newWorker(ctx)
	d.mu.Lock()
	sp.w, sp.err = w, err
	close(sp.ready)
	if err != nil && d.spare == sp {
		d.spare = nil
	}
	if err == nil && d.spare == sp {
		time.AfterFunc(keep, func() {
			d.mu.Lock()
			unused := d.spare == sp
			if unused {
				d.spare = nil
			}
			d.mu.Unlock()
			if unused {
				d.retire(w)
			}
		})
	}
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("prewarm %s: %w", d.name, err)
	}
	return nil
}

// retireGrace is how long a command-mode worker has to exit after its
// invocation before it is killed.
const retireGrace = 100 * time.Millisecond

// retire shuts a worker down in the background: it has retireGrace to exit.
// Stop waits for it as for every live worker.
func (d *deployment) retire(w *workerProc) {
	go func() {
		w.shutdown(time.Now().Add(retireGrace))
		select {
		case <-w.done:
		case <-time.After(retireGrace):
			w.kill("it did not exit after its invocation", false)
			<-w.done
		}
	}()
}

// Stop refuses new invocations, sends every worker a shutdown message with
// ctx's deadline, waits until they exit or ctx is done, then kills what is
// left (their invocations return sandbox.ErrStopped) and waits for every
// process to be reaped and its cgroup removed. A ctx without a deadline
// waits for the invocations in flight to finish. Stop returns at most
// Config.KillWait after ctx is done: a worker that has not ended by then (its
// runner could not kill it: an engine that went away) is left to end on
// its own, and the error names it. Safe to call more than once and from
// several goroutines; later calls wait for the first.
func (d *deployment) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		done := d.stopDone
		d.mu.Unlock()
		select {
		case <-done:
			return d.stopErr
		case <-ctx.Done():
			return nil
		}
	}
	d.stopped = true
	d.spare = nil // a live worker: stopped below like the others
	d.stopDone = make(chan struct{})
	for t := range d.timers {
		if t.Stop() {
			d.bg.Done()
		}
	}
	d.timers = map[*time.Timer]struct{}{}
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()

	by, _ := ctx.Deadline()
	workers := func() []*workerProc {
		d.mu.Lock()
		defer d.mu.Unlock()
		var ws []*workerProc
		for w := range d.live {
			ws = append(ws, w)
		}
		return ws
	}
	// killed is done killWait after ctx: the most Stop waits past it.
	killWait := d.cfg.KillWait
	var killed <-chan struct{}
	cancelKilled := func() {}
	defer func() { cancelKilled() }()
	afterCtx := func() <-chan struct{} {
		if killed == nil {
			var kctx context.Context
			kctx, cancelKilled = context.WithTimeout(context.Background(), killWait)
			killed = kctx.Done()
		}
		return killed
	}
	for _, w := range workers() {
		w.shutdown(by)
	}
	bgDone := make(chan struct{})
	go func() { d.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-ctx.Done():
	}
	// Kill whatever is left, including workers a restart or a command-mode
	// invocation started meanwhile, until nothing runs or what runs could
	// not be killed.
	var left []*workerProc
	for len(left) == 0 {
		ws := workers()
		if len(ws) == 0 {
			break
		}
		for _, w := range ws {
			if ctx.Err() != nil {
				go w.kill(killStop, false) // a runner's kill may block
			} else {
				w.shutdown(by)
			}
		}
		for _, w := range ws {
			select {
			case <-w.done:
				continue
			case <-ctx.Done():
			}
			go w.kill(killStop, false)
			select {
			case <-w.done:
			case <-afterCtx():
				left = append(left, w)
			}
		}
	}
	var errs []error
	if len(left) > 0 {
		names := make([]string, len(left))
		for i, w := range left {
			names[i] = "a worker"
			if s, ok := w.proc.(fmt.Stringer); ok {
				names[i] = s.String()
			}
		}
		errs = append(errs, fmt.Errorf("stop %s: %d workers still running %v after they were killed, left to end on their own: %s",
			d.name, len(left), killWait, strings.Join(names, ", ")))
	}
	select {
	case <-bgDone:
	case <-ctx.Done():
		select {
		case <-bgDone:
		case <-afterCtx():
			errs = append(errs, fmt.Errorf("stop %s: restarts or invocations still under way %v after the deadline", d.name, killWait))
		}
	}
	d.limiter().Close()
	if d.onStop != nil {
		d.onStop()
	}
	d.stopErr = errors.Join(errs...)
	close(d.stopDone)
	return d.stopErr
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// newDeployment returns the deployment of pc, not started.
func newDeployment(pc PoolConfig) (*deployment, error) {
	if err := pc.check(); err != nil {
		return nil, err
	}
	s := pc.shape()
	dep := &deployment{
		cfg:      s.cfg,
		name:     s.name,
		mode:     s.mode,
		spawn:    pc.Start,
		init:     append(InitMessage(pc), '\n'),
		timeout:  s.timeout,
		poolSize: s.poolSize,
		capacity: s.capacity,
		log:      pc.Spec.Log,
		live:     map[*workerProc]struct{}{},
		changed:  make(chan struct{}),
		timers:   map[*time.Timer]struct{}{},
	}
	if s.mode == sandbox.ModeServer {
		dep.slots = make([]*workerProc, s.poolSize)
	}
	return dep, nil
}
