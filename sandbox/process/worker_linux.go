package process

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/internal/spin"
	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// workerProc is one running worker: a process (a jail, a container)
// speaking the runtime protocol over its standard input and output. Its
// invocations are calls, matched to replies by id. Safe for concurrent use.
type workerProc struct {
	proc    Proc
	stdin   io.WriteCloser
	stdinDL writeDeadliner // stdin's, or nil: see writeLocked
	stdout  io.ReadCloser
	stderr  io.ReadCloser
	service string
	grace   time.Duration       // bounds the writes no invocation's deadline bounds
	logs    *sandbox.LogLimiter // the deployment's; nil drops the guest's lines
	maxLine int
	maxLog  int
	started time.Time

	// wlock serialises writes to stdin: a writer takes it by sending,
	// gives it back by receiving. A channel, not a mutex, so that a writer
	// can give up at its deadline while another write waits on a worker
	// that does not read.
	wlock   chan struct{}
	buf     []byte      // the line being written, under wlock
	closing atomic.Bool // shutdown is sent or under way: no invoke follows it

	mu        sync.Mutex
	calls     map[string]*call
	nextID    uint64
	inflight  int
	stuck     int // calls sent a cancel and not answered yet: the worker takes no new one
	capacity  int
	ready     bool
	accepts   []string // the optional requests the worker answers (its ready message's)
	protocol  int      // the version its ready message named
	dead      bool
	killedFor string // why the driver killed the worker; "" if it did not
	blame     bool   // the kill was the service's fault (protocol error): a crash
	exit      workerExit
	cpuMark   time.Duration     // CPU time at the end of the last invocation
	tail      tailBuffer        // the end of standard error
	oomSign   string            // a runtime's out-of-memory message seen on standard error
	onAnswer  func()            // called when the worker answers an invocation
	onDeath   func(*workerProc) // called once the worker is reaped, before its calls end
	msgs      *messageCounts    // the deployment's count of protocol messages
	// oneShot marks a command-mode worker: what it writes to standard
	// error after its one invocation answered is still that run's
	// (lastRun), whose log ends when standard error does.
	oneShot bool
	lastRun *sandbox.RunLog

	readyOnce sync.Once
	readyCh   chan struct{} // closed when the worker answered init (ready or not)
	readyErr  error         // set before readyCh closes when init failed
	done      chan struct{} // closed once the worker is reaped and its calls ended
}

// workerExit is how a worker ended.
type workerExit struct {
	outcome sandbox.Outcome // Crashed or OOM
	detail  string
	stopped bool  // killed by Stop: its calls end with sandbox.ErrStopped
	driver  bool  // killed by the driver (cancel not honoured): not a crash of the service
	runner  error // the runner lost the worker (ProcState.RunnerLost): not a crash of the service
}

// call is one invocation in flight on a worker.
type call struct {
	id    string
	reply chan reply       // buffered: the reader never blocks on a caller that left
	logs  tailBuffer       // the invocation's log messages, for Exit.Detail
	run   *sandbox.RunLog  // the run's share of the node's log; nil without a limiter
	usage sandbox.Counters // the counters its usage messages reported

	cancelled bool // sent a cancel, counted in workerProc.stuck; under workerProc.mu
}

// reply ends a call: a result, an error message, or the worker's death.
type reply struct {
	output []byte
	hops   []byte // protocol 2: the runs made on the invoke's route
	err    *worker.Error
	died   *workerExit
}

// Reasons the driver kills a worker.
const (
	killStop   = "stopped with its deployment"
	killCancel = "an invocation did not stop within %v of its cancel message"
	killStall  = "it did not read its input for %v"
)

// startWorker runs the protocol client of a started worker and sends it
// init. It returns at once; the worker is usable once waitReady returns nil.
//
// grace bounds the writes that no invocation's deadline bounds: init,
// shutdown, and the test and offer requests of request_linux.go. It is
// the deployment's cancel grace: the worker has as long to take these
// short lines as it has to answer a cancel.
func startWorker(p Proc, service string, logs *sandbox.LogLimiter, maxLine, maxLog, capacity int, grace time.Duration, init []byte, onAnswer func(), onDeath func(*workerProc), msgs *messageCounts) *workerProc {
	if grace <= 0 {
		grace = DefaultCancelGrace
	}
	w := &workerProc{
		grace:    grace,
		msgs:     msgs,
		onAnswer: onAnswer,
		onDeath:  onDeath,
		capacity: capacity,
		proc:     p,
		stdin:    p.Stdin(),
		stdout:   p.Stdout(),
		stderr:   p.Stderr(),
		service:  service,
		logs:     logs,
		maxLine:  maxLine,
		maxLog:   maxLog,
		started:  time.Now(),
		calls:    map[string]*call{},
		wlock:    make(chan struct{}, 1),
		readyCh:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	w.tail.max = maxLog
	w.stdinDL, _ = w.stdin.(writeDeadliner)
	stderrDone := make(chan struct{})
	go w.readStderr(stderrDone)
	go w.readStdout(stderrDone)
	_ = w.write(init)
	return w
}

// waitReady waits for the worker's ready message, its death or ctx.
func (w *workerProc) waitReady(ctx context.Context) error {
	select {
	case <-w.readyCh:
		return w.readyErr
	case <-ctx.Done():
		return fmt.Errorf("worker did not answer init: %w", ctx.Err())
	}
}

// write sends one line (which must end in a newline) to the worker within
// its grace.
func (w *workerProc) write(line []byte) error {
	return w.writeBy(line, time.Now().Add(w.grace))
}

// errLate says a line was not written because its time came first, while
// another write held the worker's input or before the write began: none
// of it reached the worker.
var errLate = errors.New("the line's time came before it could be written")

// lock takes the write lock, or gives up and returns false when ctx is
// done first.
func (w *workerProc) lock(ctx context.Context) bool {
	select {
	case w.wlock <- struct{}{}:
		return true
	default:
	}
	select {
	case w.wlock <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *workerProc) unlock() { <-w.wlock }

// writeBy writes line by the time by, waiting for the write lock until
// then at most.
func (w *workerProc) writeBy(line []byte, by time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), by)
	defer cancel()
	if !w.lock(ctx) {
		return errLate
	}
	defer w.unlock()
	return w.writeLocked(line, by)
}

// writeLocked writes line, the write lock held, by the time by (zero: no
// bound). A worker that stops reading its input fills the pipe (64 KiB),
// and a write without a bound would then block for ever with the lock
// held: no cancel, no shutdown, no other invocation would get through. A
// write the worker does not take by then kills the worker (stall): it
// broke the protocol, and the rest of a line cut short would run into the
// next one. Where stdin takes no write deadline, the kill alone ends the
// write.
func (w *workerProc) writeLocked(line []byte, by time.Time) error {
	start := time.Now()
	if !by.IsZero() && !start.Before(by) {
		return errLate
	}
	w.msgs.sent.Add(1)
	if w.stdinDL == nil || w.stdinDL.SetWriteDeadline(by) != nil {
		if !by.IsZero() {
			t := time.AfterFunc(by.Sub(start), func() { w.stall(time.Since(start)) })
			defer t.Stop()
		}
	}
	_, err := w.stdin.Write(line)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return w.stall(time.Since(start))
	}
	return err
}

// stall kills a worker that left a write waiting for waited and returns
// the write's error. Not reading its input is the service's fault, a
// crash; a worker being shut down is stopped, as Stop would do.
func (w *workerProc) stall(waited time.Duration) error {
	why := fmt.Sprintf(killStall, waited.Round(time.Millisecond))
	if w.closing.Load() {
		w.kill(killStop, false)
	} else {
		w.kill(why, true)
	}
	return errors.New(why)
}

// messageCounts counts a deployment's protocol messages: lines written to
// its workers and lines read from them.
type messageCounts struct {
	sent, received atomic.Uint64
}

// reserve takes a slot for one invocation if the worker is ready and below
// its capacity; invoke uses it, and the reply or the worker's death frees it.
func (w *workerProc) reserve() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ready || w.dead || w.stuck > 0 || w.inflight >= w.capacity {
		return false
	}
	w.inflight++
	return true
}

// load returns the worker's invocations in flight and whether it can take
// one more: not while an invocation it was sent a cancel for has not ended
// (a handler that blocks its runtime blocks every invocation beside it,
// and the worker may be killed at the end of the grace).
func (w *workerProc) load() (inflight int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inflight, w.ready && !w.dead && w.stuck == 0 && w.inflight < w.capacity
}

// invoke runs one invocation in a slot reserved with reserve: it sends
// input, waits for the reply, the worker's death or ctx, and returns the
// exit with the CPU time and peak memory of the worker's cgroup. On ctx it
// sends a cancel message and has the worker killed unless the invocation
// ends within grace; a deadline is the Timeout outcome, a cancellation
// ctx's error.
func (w *workerProc) invoke(ctx context.Context, input []byte, grace time.Duration) (sandbox.Exit, error) {
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return sandbox.Exit{}, errRetry // its death released the reservation
	}
	w.nextID++
	c := &call{id: strconv.FormatUint(w.nextID, 10), reply: make(chan reply, 1)}
	c.logs.max = w.maxLog
	if w.logs != nil {
		c.run = w.logs.Run(sandbox.RunLogOf(ctx))
		if w.oneShot {
			w.lastRun = c.run // ended by readStderr
		} else {
			defer c.run.End()
		}
	}
	w.calls[c.id] = c
	cpu0 := w.cpuMark
	w.mu.Unlock()

	if err := w.send(ctx, c.id, input, grace); err != nil {
		w.finish(c)
		switch {
		case errors.Is(err, errShutdown):
			// Stop shut the worker down between the reservation and the
			// write: the worker never saw the invocation.
			return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "stopped with its deployment"}, sandbox.ErrStopped
		case errors.Is(err, errLate):
			// ctx ended while another write held the input: the worker
			// never saw the invocation and is not to blame.
			<-ctx.Done()
			return ctxExit(ctx, w.callLogs(c, "stopped at the deadline"))
		}
		w.kill(fmt.Sprintf("write invocation: %v", err), true)
		<-w.done
		return w.died(w.exit, "")
	}
	var r reply
	select {
	case r = <-c.reply:
	case <-ctx.Done():
		w.cancel(c, grace)
		return ctxExit(ctx, w.callLogs(c, "stopped at the deadline"))
	}
	var usage sandbox.Usage
	if cpu := w.proc.CPUTime(); cpu >= 0 {
		w.mu.Lock()
		usage.CPU = max(cpu-cpu0, 0)
		w.cpuMark = max(w.cpuMark, cpu)
		w.mu.Unlock()
	}
	usage.PeakMemory = w.proc.PeakMemory()
	c.usage.Fill(&usage)
	switch {
	case r.died != nil:
		exit, err := w.died(*r.died, w.callLogs(c, ""))
		exit.Usage = usage
		return exit, err
	case r.err != nil:
		exit := sandbox.Exit{Outcome: sandbox.Crashed, Usage: usage}
		switch r.err.Code {
		case worker.CodeOOM:
			exit.Outcome = sandbox.OOM
		case worker.CodeDeadline:
			exit.Outcome = sandbox.Timeout
		}
		msg := r.err.Message
		if r.err.Code != "" && r.err.Code != worker.CodeError && r.err.Code != worker.CodePanic {
			msg = r.err.Code + ": " + msg
		}
		if r.err.Stack != "" && !strings.Contains(msg, r.err.Stack) {
			msg += "\n" + r.err.Stack
		}
		exit.Detail = w.callLogs(c, msg)
		return exit, nil
	}
	if _, out := sandbox.RouteOf(ctx); out != nil && len(r.hops) > 0 {
		hops, err := sandbox.ParseHops(r.hops)
		if err != nil {
			// The module's own output stands; the node routes its emits.
			w.logLine(fmt.Sprintf("worker result with bad hops, ignored: %v", err))
		}
		*out = append(*out, hops...)
	}
	return sandbox.Exit{Outcome: sandbox.OK, Output: r.output, Detail: w.callLogs(c, ""), Usage: usage}, nil
}

// ctxExit is the exit of an invocation that ctx ended: a deadline is the
// Timeout outcome with detail, a cancellation ctx's error.
func ctxExit(ctx context.Context, detail string) (sandbox.Exit, error) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return sandbox.Exit{Outcome: sandbox.Timeout, Detail: detail}, nil
	}
	return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "cancelled"}, ctx.Err()
}

// speaks says whether the worker answered ready with protocol version v or
// a later one.
func (w *workerProc) speaks(v int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.protocol >= v
}

// logLine writes line to the service's log, if it has one.
func (w *workerProc) logLine(line string) {
	if w.logs != nil {
		w.logs.Log(line)
	}
}

// callLogs returns head followed by c's log messages.
func (w *workerProc) callLogs(c *call, head string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return c.logs.String(head)
}

// signalReady ends waitReady with err (nil: ready).
func (w *workerProc) signalReady(err error) {
	w.readyOnce.Do(func() {
		w.readyErr = err
		close(w.readyCh)
	})
}

// errRetry says the worker cannot take the invocation after all: pick
// another.
var errRetry = errors.New("worker not available")

// died turns the death of the worker into the exit of one of its calls.
func (w *workerProc) died(e workerExit, logs string) (sandbox.Exit, error) {
	if e.stopped {
		return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "stopped with its deployment"}, sandbox.ErrStopped
	}
	detail := e.detail
	if logs != "" {
		detail = logs + "\n" + detail
	}
	if e.runner != nil {
		return sandbox.Exit{Outcome: e.outcome, Detail: detail}, fmt.Errorf("worker lost by its runner: %w", e.runner)
	}
	return sandbox.Exit{Outcome: e.outcome, Detail: detail}, nil
}

// errShutdown is send's error on a worker that was sent shutdown: the
// protocol sends it nothing more.
var errShutdown = errors.New("the worker was shut down")

// send writes the invoke message for call id by ctx's deadline, or grace
// from now when that is later: a worker that cannot take the line for as
// long as it may take to answer a cancel is broken (see writeLocked), one
// that was busy for a moment as the deadline came is not. It waits for the
// write lock until ctx is done (errLate).
func (w *workerProc) send(ctx context.Context, id string, input []byte, grace time.Duration) error {
	if !w.lock(ctx) {
		return errLate
	}
	defer w.unlock()
	if w.closing.Load() {
		return errShutdown
	}
	if ctx.Err() != nil {
		return errLate
	}
	b := append(w.buf[:0], `{"type":"invoke","id":"`...)
	b = append(b, id...)
	b = append(b, `","input":`...)
	b = append(b, input...)
	if dl, ok := ctx.Deadline(); ok {
		b = append(b, `,"deadline":`...)
		b = strconv.AppendInt(b, dl.UnixMilli(), 10)
	}
	if route, _ := sandbox.RouteOf(ctx); route != nil && w.speaks(worker.RouteVersion) {
		b = append(b, `,"route":`...)
		b = append(b, route...)
	}
	b = append(b, "}\n"...)
	if cap(b) <= 64<<10 {
		w.buf = b
	}
	var by time.Time
	if dl, ok := ctx.Deadline(); ok {
		by = time.Now().Add(grace)
		if dl.After(by) {
			by = dl
		}
	}
	return w.writeLocked(b, by)
}

// cancel sends the cancel message for c and kills the worker unless c ends
// within grace. The kill is set first and does not wait for the message,
// which has the grace to be written: a worker that does not read its
// input takes neither the message nor another line, and is killed as one
// that stalled a write. With no grace (command mode) the worker is killed
// at once and is sent no message.
func (w *workerProc) cancel(c *call, grace time.Duration) {
	w.mu.Lock()
	if _, pending := w.calls[c.id]; pending && !c.cancelled {
		c.cancelled = true
		w.stuck++
	}
	w.mu.Unlock()
	var sent atomic.Bool
	time.AfterFunc(grace, func() {
		w.mu.Lock()
		_, pending := w.calls[c.id]
		w.mu.Unlock()
		switch {
		case !pending:
		case sent.Load() || grace <= 0:
			w.kill(fmt.Sprintf(killCancel, grace), false)
		default:
			w.stall(grace)
		}
	})
	if grace > 0 && w.writeBy([]byte(`{"type":"cancel","id":"`+c.id+`"}`+"\n"), time.Now().Add(grace)) == nil {
		sent.Store(true)
	}
}

// finish forgets a call that ended without a reply.
func (w *workerProc) finish(c *call) {
	w.mu.Lock()
	if _, ok := w.calls[c.id]; ok {
		delete(w.calls, c.id)
		w.inflight--
		if c.cancelled {
			w.stuck--
		}
	}
	w.mu.Unlock()
}

// kill kills the worker's whole sandbox for reason. blame says the service
// broke the protocol (a crash); otherwise the driver killed it for its own
// reasons (a cancel not honoured in time, a stop), which is no crash.
func (w *workerProc) kill(reason string, blame bool) {
	w.mu.Lock()
	if !w.dead && w.killedFor == "" {
		w.killedFor, w.blame = reason, blame
	}
	w.mu.Unlock()
	w.proc.Kill()
}

// shutdown asks the worker to finish its invocations and exit by by, then
// closes its standard input: the protocol sends nothing after shutdown, so
// the worker reads the end of file next. Only the first call sends. The
// message has the worker's grace, or until by when sooner, to be written; a
// worker that does not take it in time (its input is full, or another
// write to it is stuck) is killed, so that Stop never waits on it.
func (w *workerProc) shutdown(by time.Time) {
	if !w.closing.CompareAndSwap(false, true) {
		return
	}
	msg := `{"type":"shutdown","id":"shutdown"}` + "\n"
	if !by.IsZero() {
		msg = fmt.Sprintf(`{"type":"shutdown","id":"shutdown","by":%d}`+"\n", by.UnixMilli())
	}
	bound := time.Now().Add(w.grace)
	if !by.IsZero() && by.Before(bound) {
		bound = by
	}
	ctx, cancel := context.WithDeadline(context.Background(), bound)
	defer cancel()
	if !w.lock(ctx) {
		w.kill(killStop, false)
		return
	}
	defer w.unlock()
	err := w.writeLocked([]byte(msg), bound)
	_ = w.stdin.Close()
	if errors.Is(err, errLate) {
		w.kill(killStop, false) // a stalled write has killed it already
	}
}

// stderrBuffer is how much of one line of standard error the driver holds:
// the rest of a longer line is read and counted, not kept.
const stderrBuffer = 16 << 10

// readStderr logs every line of standard error, through the deployment's
// log limiter, and keeps its tail. A line is the run's when exactly one
// invocation is in flight on the worker (always so in command mode), else
// the service's. Memory is bounded whatever the worker writes: a line
// longer than stderrBuffer keeps its first stderrBuffer bytes.
func (w *workerProc) readStderr(done chan<- struct{}) {
	defer close(done)
	defer func() {
		w.mu.Lock()
		last := w.lastRun
		w.mu.Unlock()
		if last != nil {
			last.End()
		}
	}()
	br := bufio.NewReaderSize(w.stderr, stderrBuffer)
	for {
		line, size, err := readLogLine(br)
		if size > 0 || err == nil {
			text := strings.TrimRight(string(line), "\r")
			w.mu.Lock()
			w.tail.add(text)
			if w.oomSign == "" {
				w.oomSign = oomSign(text)
			}
			run := w.soleRun()
			if run == nil {
				run = w.lastRun
			}
			w.mu.Unlock()
			switch {
			case run != nil:
				run.LogPrefix(text, size)
			case w.logs != nil:
				w.logs.LogPrefix(text, size)
			}
		}
		if err != nil {
			return
		}
	}
}

// soleRun returns the run log of the one invocation in flight, or nil when
// there are none or several. Called with w.mu held.
func (w *workerProc) soleRun() *sandbox.RunLog {
	if len(w.calls) != 1 {
		return nil
	}
	for _, c := range w.calls {
		return c.run
	}
	return nil
}

// readLogLine returns the next line of br without its newline, or its
// first br.Size() bytes when it is longer, and the line's full size; the
// rest of a long line is read and discarded. At the end of the input it
// returns what came after the last newline with the error.
func readLogLine(br *bufio.Reader) (line []byte, size int, err error) {
	line, err = br.ReadSlice('\n')
	size = len(line)
	if errors.Is(err, bufio.ErrBufferFull) {
		head := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			var more []byte
			more, err = br.ReadSlice('\n')
			size += len(more)
		}
		if err == nil {
			size-- // the newline
		}
		return head, size, err
	}
	if err == nil {
		return line[:len(line)-1], size - 1, nil
	}
	return line, size, err
}

// readStdout reads protocol messages until the worker closes its output,
// then reaps it and ends every call still in flight.
func (w *workerProc) readStdout(stderrDone <-chan struct{}) {
	var r io.Reader = w.stdout
	if f, ok := w.stdout.(*os.File); ok {
		// A pipe: spin briefly before each blocking read.
		if sr, err := spin.NewReader(f, spin.Wait, nil); err == nil {
			r = sr
		}
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var protoErr error
	for {
		line, err := readProtocolLine(br, w.maxLine)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				protoErr = err
			}
			break
		}
		w.msgs.received.Add(1)
		if err := w.handle(line); err != nil {
			protoErr = err
			break
		}
	}
	if protoErr != nil {
		w.kill("protocol error: "+protoErr.Error(), true)
	}
	w.stdout.Close()
	state := w.proc.Wait()
	select {
	case <-stderrDone:
	case <-time.After(200 * time.Millisecond):
	}
	w.stderr.Close()
	w.stdin.Close()

	w.mu.Lock()
	e := w.classify(state)
	w.exit = e
	w.dead = true
	calls := w.calls
	w.calls = map[string]*call{}
	w.inflight = 0
	w.stuck = 0
	w.mu.Unlock()
	_ = w.proc.Release(2 * time.Second)
	if w.onDeath != nil {
		w.onDeath(w)
	}
	for _, c := range calls {
		c.reply <- reply{died: &e}
	}
	w.signalReady(errors.New(e.detail))
	close(w.done)
}

// classify says how the worker ended, from its state, its OOM count and
// the end of its standard error. Called with w.mu held.
func (w *workerProc) classify(state ProcState) workerExit {
	tail := w.tail.String("")
	withTail := func(s string) string {
		if tail != "" {
			return s + "\nstderr:\n" + tail
		}
		return s
	}
	if state.Err != nil && state.RunnerLost && w.killedFor != killStop {
		// How the worker ended is unknown, whatever the driver did to it.
		return workerExit{outcome: sandbox.Error, detail: withTail(fmt.Sprintf("worker lost by its runner: %v", state.Err)), runner: state.Err}
	}
	if w.killedFor != "" && w.blame {
		return workerExit{outcome: sandbox.Crashed, detail: withTail("worker killed: " + w.killedFor)}
	}
	if w.killedFor == killStop {
		return workerExit{outcome: sandbox.Crashed, detail: "worker " + killStop, stopped: true, driver: true}
	}
	if w.killedFor != "" {
		return workerExit{outcome: sandbox.Crashed, detail: withTail("worker killed: " + w.killedFor), driver: true}
	}
	if state.Err != nil {
		return workerExit{outcome: sandbox.Crashed, detail: withTail(fmt.Sprintf("worker lost: %v", state.Err))}
	}
	if state.OOMKilled && state.OOMReason != "" {
		return workerExit{outcome: sandbox.OOM, detail: withTail("out of memory: " + state.OOMReason)}
	}
	if state.OOMKilled || w.proc.OOMKills() > 0 {
		return workerExit{outcome: sandbox.OOM, detail: withTail("out of memory: the kernel killed the worker at its cgroup memory limit")}
	}
	if w.oomSign != "" {
		return workerExit{outcome: sandbox.OOM, detail: withTail("out of memory: " + w.oomSign)}
	}
	switch {
	case state.SetupFailed && !w.ready && state.Exited:
		return workerExit{outcome: sandbox.Crashed, detail: withTail(fmt.Sprintf("sandbox set-up failed (exit status %d)", state.Code))}
	case state.SetupFailed && !w.ready:
		return workerExit{outcome: sandbox.Crashed, detail: withTail("sandbox set-up failed")}
	case state.Exited:
		return workerExit{outcome: sandbox.Crashed, detail: withTail(fmt.Sprintf("worker exited with status %d", state.Code))}
	case state.Signal != 0:
		return workerExit{outcome: sandbox.Crashed, detail: withTail(fmt.Sprintf("worker killed by signal %d (%v)", int(state.Signal), state.Signal))}
	}
	return workerExit{outcome: sandbox.Crashed, detail: withTail("worker ended without an exit status")}
}

// oomSigns are the messages with which runtimes die of running out of
// memory. They are looked for in every line of standard error, not only
// in its tail: Go follows its own with a dump of every goroutine.
var oomSigns = []string{"JavaScript heap out of memory", "fatal error: runtime: out of memory", "MemoryError"}

// oomSign returns the out-of-memory message in line, or "".
func oomSign(line string) string {
	for _, sign := range oomSigns {
		if strings.Contains(line, sign) {
			return sign
		}
	}
	return ""
}

// resultPrefix is how the shims in this repository start a result line; a
// line that starts with it is decoded without reflection.
var resultPrefix = []byte(`{"type":"result","id":"`)

// handle acts on one message from the worker.
func (w *workerProc) handle(line []byte) error {
	if bytes.HasPrefix(line, resultPrefix) {
		rest := line[len(resultPrefix):]
		if q := bytes.IndexByte(rest, '"'); q > 0 {
			id, rest := rest[:q], rest[q+1:]
			if out, ok := bytes.CutPrefix(rest, []byte(`,"output":`)); ok && len(out) > 1 && out[len(out)-1] == '}' {
				out = out[:len(out)-1]
				if json.Valid(out) {
					w.deliver(string(id), reply{output: append([]byte(nil), out...)})
					return nil
				}
			}
		}
	}
	var m worker.Message
	if err := json.Unmarshal(line, &m); err != nil {
		return fmt.Errorf("undecodable message %.120q: %v", line, err)
	}
	switch m.Type {
	case worker.TypeReady:
		w.mu.Lock()
		if w.ready {
			w.mu.Unlock()
			return errors.New("a second ready message")
		}
		if m.Protocol < worker.Version || m.Protocol > worker.RouteVersion {
			w.mu.Unlock()
			return fmt.Errorf("the worker speaks protocol %d, the driver %d to %d", m.Protocol, worker.Version, worker.RouteVersion)
		}
		w.ready = true
		w.protocol = m.Protocol
		w.accepts = m.Accepts
		w.capacity = min(max(m.Concurrency, 1), w.capacity)
		w.mu.Unlock()
		w.signalReady(nil)
	case worker.TypeResult:
		w.deliver(m.ID, reply{output: m.Output, hops: m.Hops})
	case worker.TypeError:
		if m.Error == nil {
			m.Error = &worker.Error{Message: "error message without an error"}
		}
		w.mu.Lock()
		ready := w.ready
		w.mu.Unlock()
		if !ready {
			// The answer to init: the module did not load. The worker exits.
			w.signalReady(fmt.Errorf("load %s: %s", w.service, strings.TrimSpace(m.Error.Message+"\n"+m.Error.Stack)))
			return nil
		}
		if !w.deliver(m.ID, reply{err: m.Error}) && w.logs != nil {
			// Not an invocation's (a bad_input for a line the worker could
			// not read, or a late answer): the service's log keeps it.
			w.logs.Log(fmt.Sprintf("worker error for no invocation in flight (id %q): %s: %s", m.ID, m.Error.Code, m.Error.Message))
		}
	case worker.TypeUsage:
		w.mu.Lock()
		c := w.calls[m.ID]
		w.mu.Unlock()
		if c != nil {
			addCounters(&c.usage, m.Counters)
		}
	case worker.TypeLog:
		text := m.Text
		if m.Level != "" && m.Level != "info" {
			text = m.Level + ": " + text
		}
		var run *sandbox.RunLog
		w.mu.Lock()
		if c := w.calls[m.ID]; c != nil {
			c.logs.add(text)
			run = c.run
		}
		w.mu.Unlock()
		for l := range strings.SplitSeq(text, "\n") {
			switch {
			case run != nil:
				run.Log(l)
			case w.logs != nil:
				w.logs.Log(l)
			}
		}
	}
	// Unknown types are ignored: a newer worker may send more.
	return nil
}

// addCounters adds the counters of a usage message to cs: an object of
// names and numbers. What is not (counters that are not an object, a value
// that is not a number) is dropped and counted, never a protocol error.
func addCounters(cs *sandbox.Counters, raw json.RawMessage) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		cs.Drop()
		return
	}
	for name, v := range m {
		var f float64
		if err := json.Unmarshal(v, &f); err != nil || len(v) == 0 || v[0] == 'n' {
			cs.Drop() // not a number (null decodes as 0 otherwise)
			continue
		}
		_ = cs.Add(name, f)
	}
}

// deliver ends call id with r and reports whether it was in flight; a reply
// for a call that already ended (it was cancelled) is dropped.
func (w *workerProc) deliver(id string, r reply) bool {
	w.mu.Lock()
	c := w.calls[id]
	if c != nil {
		delete(w.calls, id)
		w.inflight--
		if c.cancelled {
			w.stuck--
		}
	}
	w.mu.Unlock()
	if c != nil {
		// The deployment hears of the answer first (its crash count starts
		// over), so that a caller holding its reply never finds it still
		// unhealthy.
		if w.onAnswer != nil {
			w.onAnswer()
		}
		c.reply <- r // buffered: never blocks
	}
	return c != nil
}

// readProtocolLine returns the next line without its newline; the slice is
// valid until the next call.
func readProtocolLine(br *bufio.Reader, maxLine int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, fmt.Errorf("a last line without a newline: %.120q", line)
		}
		return nil, err
	}
	long := append([]byte(nil), line...)
	for {
		line, err = br.ReadSlice('\n')
		long = append(long, line...)
		if len(long) > maxLine {
			return nil, fmt.Errorf("a line longer than max_line (%d bytes)", maxLine)
		}
		switch {
		case err == nil:
			return long[:len(long)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("a last line without a newline: %.120q", long)
		default:
			return nil, err
		}
	}
}

// tailBuffer keeps the last max bytes of lines added to it.
type tailBuffer struct {
	max   int
	lines []string
	size  int
	cut   bool
}

func (t *tailBuffer) add(line string) {
	if t.max <= 0 {
		t.max = DefaultMaxLog
	}
	if len(line) > t.max {
		line = "..." + line[len(line)-t.max:]
	}
	t.lines = append(t.lines, line)
	t.size += len(line) + 1
	for t.size > t.max && len(t.lines) > 1 {
		t.size -= len(t.lines[0]) + 1
		t.lines = t.lines[1:]
		t.cut = true
	}
}

// String returns head (when not empty) followed by the kept lines.
func (t *tailBuffer) String(head string) string {
	if len(t.lines) == 0 {
		return head
	}
	var b strings.Builder
	if head != "" {
		b.WriteString(head)
		b.WriteString("\n")
	}
	if t.cut {
		b.WriteString("...\n")
	}
	b.WriteString(strings.Join(t.lines, "\n"))
	return b.String()
}
