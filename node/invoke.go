package node

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// onTick is the scheduler's callback: one goroutine per tick.
func (n *Node) onTick(ev trigger.Event) { n.onTickNoted(ev, nil) }

// onTickNoted is onTick for a tick whose write to the ticks bucket is in
// flight: noted is closed when it is done, and the run waits for it before
// it takes effect (waitTickNoted).
func (n *Node) onTickNoted(ev trigger.Event, noted <-chan struct{}) {
	d := n.lookup(ev.Service)
	if d == nil {
		return // removed between the tick and now
	}
	if !n.claimTick(ev) {
		return // another node of the cluster fires it, or none can
	}
	if err := n.gate.admit(workTick, ev.Service); err != nil {
		return // counted, and logged once per episode
	}
	ctx := n.ctx
	if noted != nil {
		ctx = context.WithValue(ctx, tickNotedKey{}, noted)
	}
	n.invoke(ctx, d, ev)
}

// How long a caller is told to wait before trying again.
const (
	// retryBusy follows a firing skipped over its service's concurrency
	// bound.
	retryBusy = time.Second
	// retryUnavailable follows work refused while the store cannot write,
	// and a run the store did not record.
	retryUnavailable = 5 * time.Second
)

// Fire implements server.Backend: run a service now and wait for the run.
// A run the store did not acknowledge is an error (server.ErrUnavailable,
// with the run), never a success; a firing over the service's concurrency
// bound is recorded as skipped and returned as server.ErrBusy with the
// skipped run. Both say when to retry.
func (n *Node) Fire(ctx context.Context, name string, message json.RawMessage) (api.Run, error) {
	if n.lookup(name) == nil {
		if run, forwarded, err := n.forwardFire(ctx, name, message); forwarded {
			return run, err
		}
	}
	d, ev, err := n.manualEvent(ctx, name, message)
	if err != nil {
		return api.Run{}, err
	}
	return n.invokeFor(ctx, d, ev)
}

// manualEvent is the manual firing of service name with message (Fire,
// FireRun, FireDetached), or the error kind that refuses it.
func (n *Node) manualEvent(ctx context.Context, name string, message json.RawMessage) (*deployed, trigger.Event, error) {
	d, err := n.deployedFor(ctx, name, message)
	if err != nil {
		return nil, trigger.Event{}, err
	}
	if !d.manual {
		return nil, trigger.Event{}, server.Errorf(server.ErrConflict, "service %s has no manual trigger", name)
	}
	if err := n.gate.admit(workFire, name); err != nil {
		return nil, trigger.Event{}, &server.Error{Kind: server.ErrUnavailable, Msg: err.Error(), RetryAfter: retryUnavailable}
	}
	return d, trigger.Event{Service: name, Trigger: d.manualName, Kind: trigger.KindManual, At: time.Now().UTC(), Message: message}, nil
}

// invokeFor runs d for ev on the node's lifetime and waits for the run
// while ctx lasts: a run asked for by a caller (a fire, a webhook) is not
// abandoned when the caller hangs up; it finishes and is recorded, and
// the caller just stops waiting.
func (n *Node) invokeFor(ctx context.Context, d *deployed, ev trigger.Event) (api.Run, error) {
	type result struct {
		run store.Run
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := n.invoke(n.ctx, d, ev)
		done <- result{r, err}
	}()
	select {
	case r := <-done:
		return apiRun(r.run), r.err
	case <-ctx.Done():
		return api.Run{}, ctx.Err()
	}
}

// deployedFor is the deployed service name, for running it by hand (a
// fire, a plan) with message: an error kind when it is not deployed or
// the message is not JSON.
func (n *Node) deployedFor(ctx context.Context, name string, message json.RawMessage) (*deployed, error) {
	d := n.lookup(name)
	if d == nil {
		if _, err := n.store.Service(ctx, name); err != nil {
			return nil, err
		}
		if where := n.whereIs(name); where != "" {
			return nil, server.Errorf(server.ErrConflict, "%s, not on this one (%s): fire it there", where, n.cfg.Name)
		}
		return nil, server.Errorf(server.ErrConflict, "service %s is registered but not deployed (see andromeda inspect %s)", name, name)
	}
	if phase := d.life.get(); phase != api.PhaseStarted {
		return nil, notStarted(name, phase)
	}
	if len(message) > 0 && !json.Valid(message) {
		return nil, server.Errorf(server.ErrInvalid, "message: must be valid JSON")
	}
	return d, nil
}

// invoke runs one invocation of d for ev, applies its state change, records
// the run and returns it. Every failure of the service is data on the run;
// the error is for a run the store could not record (server.ErrUnavailable)
// and for one skipped over the concurrency bound (server.ErrBusy; the skip
// is recorded). A panic anywhere on the way (driver, host functions, the
// node's own code) becomes the run's outcome, never the node's end.
func (n *Node) invoke(ctx context.Context, d *deployed, ev trigger.Event) (run store.Run, err error) {
	if phase, ok := d.life.enter(); !ok {
		return run, notStarted(d.rec.Name, phase)
	}
	defer d.life.leave()
	if n.stopping.Load() {
		return run, server.Errorf(server.ErrUnavailable, "node %s is stopping: it starts no new run", n.cfg.Name)
	}
	n.runs.Add(1)
	defer n.runs.Done()
	run = store.Run{
		ID:      cmp.Or(ev.RunID, newRunID()),
		Service: d.rec.Name,
		Version: d.rec.Version,
		Owner:   d.rec.Owner,
		Node:    n.cfg.Name,
		Trigger: contract.Trigger{Kind: ev.Kind, Name: ev.Trigger, Topic: ev.Topic, Seq: ev.Seq, Publisher: ev.Publisher, At: ev.At.UTC().Format(time.RFC3339Nano)},
		Start:   time.Now().UTC(),
		Digest:  d.rec.Digest,
		Driver:  d.rec.Decision.Driver,
	}
	run.Trigger.Flow = ev.Flow
	run.KeepInput(ev.Message)
	if ev.Kind == trigger.KindCron || ev.Kind == trigger.KindEvent {
		n.metrics.observeLag(ev.Kind, run.Start.Sub(ev.At))
	}
	if ev.Kind == trigger.KindFlow && placedOn(ctx) != nil {
		run.Driver = "browser" // a flow module placed on a browser runtime (flowbrowser.go)
	}
	if ev.Kind == trigger.KindHTTP {
		run.Trigger.HTTP = &contract.HTTPInfo{Method: ev.Method, Path: ev.Path}
	}
	log := n.log.With(logService, d.rec.Name, logRun, run.ID, logTrigger, ev.Trigger)
	finishing := false
	var fl *flight // in the registry of runs in flight once it has its slot (running.go)
	defer func() {
		if fl != nil {
			n.inflight.end(fl, run, err)
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic in an invocation", "panic", p, "stack", string(debug.Stack()))
			if finishing {
				run, err = store.Run{}, fmt.Errorf("record run %s: panic: %v", run.ID, p)
				return
			}
			run, err = n.finish(log, d, run, sandbox.Crashed, fmt.Sprintf("panic in the runner: %v", p), nil, false)
		}
	}()

	if ev.Kind == trigger.KindCron {
		if skip, until := d.health.Skip(run.Start); skip {
			st := d.health.State()
			finishing = true
			return n.finish(log, d, run, sandbox.Skipped, fmt.Sprintf("skipped: unhealthy after %d consecutive failures; backing off until %s", st.Failures, until.Format(time.RFC3339)), nil, false)
		}
	}
	select {
	case d.sem <- struct{}{}:
		defer func() { <-d.sem }()
	default:
		if ev.Kind == trigger.KindEvent || ev.Kind == trigger.KindFlow {
			return run, errEventBusy // not recorded: the event or flow message waits (see handleEvent, flowExec.step)
		}
		finishing = true
		reason := fmt.Sprintf("skipped: concurrency limit reached (%d runs in progress, resources.concurrency = %d)", cap(d.sem), cap(d.sem))
		if run, err = n.finish(log, d, run, sandbox.Skipped, reason, nil, false); err != nil {
			return run, err
		}
		return run, &server.Error{Kind: server.ErrBusy, Msg: reason, Run: ptr(apiRun(run)), RetryAfter: retryBusy}
	}
	if reason := d.overRunRate(); reason != "" {
		if ev.Kind == trigger.KindEvent || ev.Kind == trigger.KindFlow {
			return run, errEventBusy // not recorded: it waits, as for a slot
		}
		finishing = true
		if run, err = n.finish(log, d, run, sandbox.Skipped, reason, nil, false); err != nil {
			return run, err
		}
		return run, &server.Error{Kind: server.ErrBusy, Msg: reason, Run: ptr(apiRun(run)), RetryAfter: retryBusy}
	}
	fl = n.inflight.begin(run)

	n.notify(run.Owner, api.WatchEvent{Kind: api.WatchRunStart, Service: run.Service, Version: run.Version, Run: run.ID, Trigger: ev.Trigger})
	res, pending, failure := n.attempt(ctx, log, d, &run, ev)
	if res == nil && failure == "" {
		return run, errPlacementGone // not recorded: the flow engine sends the message again
	}
	finishing = true
	if failure != "" {
		return n.finish(log, d, run, sandbox.Error, failure, res, pending)
	}
	if res.Outcome == sandbox.OK {
		run.Emitted = n.publishEmits(ctx, d, res.Output.Emit)
	}
	return n.finish(log, d, run, res.Outcome, res.Error, res, pending)
}

// attempt invokes d until its state change commits or it needs none, up to
// state.attempts times with jittered backoff on compare-and-swap
// conflicts. A non-empty failure is an error of the node's, not of the
// service. No result and no failure: the run went to a browser runtime
// whose page went away before it answered (errPlacementGone).
func (n *Node) attempt(ctx context.Context, log *slog.Logger, d *deployed, run *store.Run, ev trigger.Event) (res *sandbox.Result, pending bool, failure string) {
	attempts := n.cfg.State.Attempts
	backoff := stateBackoffBase
	// Optimistic writes can starve a slow run under sustained contention:
	// a run that conflicted serialOnConflict times takes the service's
	// write lock for its further attempts, and while any run holds or
	// waits for it, every state-writing run of the service queues there
	// too. So a run that keeps losing gets its turn.
	serial := false
	defer func() {
		if serial {
			d.stateMu.Unlock()
			d.contended.Add(-1)
		}
	}()
	for attempt := 1; ; attempt++ {
		run.Attempts = attempt
		if d.manifest.Capabilities.State && !serial && (attempt > serialOnConflict || d.contended.Load() > 0) {
			d.contended.Add(1)
			d.stateMu.Lock()
			serial = true
		}
		res, pending, failure, conflict := n.once(ctx, log, d, run, ev)
		if !conflict {
			return res, pending, failure
		}
		if attempt == attempts {
			// Its actions are not executed when the state write fails.
			res.Outcome, res.Error = sandbox.Error, fmt.Sprintf("state: changed by other runs on each of %d attempts; actions dropped", attempt)
			return res, false, ""
		}
		// Jittered exponential backoff, so writers that collided do not
		// collide again in lockstep.
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Debug("state conflict, invoking again on fresh state", "attempt", attempt, "wait", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return res, false, "state: " + ctx.Err().Error()
		}
		backoff = min(2*backoff, stateBackoffMax)
	}
}

// once is one attempt: read the service's state, call the service with it,
// and commit the state change it returns. conflict says another run
// changed the state in between and nothing was committed: the run may be
// tried again on fresh state.
func (n *Node) once(ctx context.Context, log *slog.Logger, d *deployed, run *store.Run, ev trigger.Event) (res *sandbox.Result, pending bool, failure string, conflict bool) {
	var snap store.Snapshot
	if d.manifest.Capabilities.State {
		var err error
		if snap, err = n.store.State(ctx, d.rec.Name); err != nil {
			return nil, false, "read state: " + err.Error(), false
		}
	}
	in := contract.Input{RunID: run.ID, Service: d.rec.Name, Trigger: run.Trigger, Message: ev.Message, Args: ev.Args, State: snap.Values, Config: overlay(d.runConfig(run), ev.Config),
		FlowContext: ev.FlowContext}
	var dep sandbox.Deployment
	var pd *placedDeployment
	if run.Trigger.Kind == trigger.KindFlow {
		pd = placedOn(ctx) // a walk up the context's chain: flow runs only
	}
	if pd != nil {
		dep = pd // a flow module placed on a browser runtime
	} else {
		var err error
		if dep, err = n.ensureDeployed(ctx, d); err != nil {
			return nil, false, err.Error(), false
		}
	}
	// The guest's log lines of this run go to the logs stream with the
	// run's id, within the driver's per-run and per-service caps.
	rctx := sandbox.WithRunLog(ctx, n.logSink(d.rec.Name, d.rec.Version, d.rec.Owner, run.ID, log))
	if full := d.volumesFull(); full != "" {
		return nil, false, full, false
	}
	rctx = sandbox.WithArgs(rctx, ev.Args)
	// A kill (andromeda kill) cancels the call alone, never the store work
	// around it.
	rctx, release := n.inflight.bind(rctx, run.ID)
	r, err := safeCall(rctx, dep, in, d.timeout())
	release()
	waitTickNoted(ctx) // the tick is remembered before anything of its run takes effect
	c := killedBy(rctx)
	if c == nil {
		c = n.inflight.killed(run.ID) // the stop's kill may end the call before its context is cancelled
	}
	if c != nil && (err != nil || r.Outcome != sandbox.OK && r.Outcome != sandbox.Noop) {
		return &sandbox.Result{Outcome: sandbox.Cancelled, Error: c.Error(), Usage: r.Usage}, false, "", false
	}
	if errors.Is(err, errPlacementGone) {
		return nil, false, "", false // not run, or not known to have run: see invoke
	}
	if err != nil {
		return &r, false, "runner: " + err.Error(), false
	}
	d.volumesOver(&r)
	// Actions the service may not ask for reject the run before anything
	// of it takes effect, its state change included. Actions taken from
	// the minute's budget go back if they do not take effect.
	if taken := d.judgeActions(&r, n.executorFor); taken != nil {
		defer func() {
			if r.Outcome != sandbox.OK || conflict || failure != "" {
				d.rates.giveBack(*taken)
			}
		}()
	}
	if (r.Outcome == sandbox.OK || r.Outcome == sandbox.Noop) && !r.Output.FlowContext.Empty() && ev.Kind != trigger.KindFlow {
		// The flow engine applies a module run's write (flowrun.go).
		r.Outcome, r.Error = sandbox.Error, "flow_context: only a flow module's run may change its flow's context; this run was fired by "+ev.Kind
		return &r, false, "", false
	}
	if r.Outcome != sandbox.OK && r.Outcome != sandbox.Noop || r.Output.State.Empty() {
		return &r, false, "", false
	}
	if !d.manifest.Capabilities.State {
		r.Outcome, r.Error = sandbox.Error, "state: the service changed state but its manifest does not grant capabilities.state"
		return &r, false, "", false
	}
	pending, failure, conflict = n.commit(ctx, log, d, run, snap, &r)
	return &r, pending, failure, conflict
}

// commit applies a run's state change over the snapshot it read. The run
// is written ahead of its state, as it will be recorded if the state
// commits (pending), so a crash between the two loses neither. A state
// write that fails for another reason than a conflict makes the run an
// error, and its actions are not executed.
func (n *Node) commit(ctx context.Context, log *slog.Logger, d *deployed, run *store.Run, snap store.Snapshot, r *sandbox.Result) (pending bool, failure string, conflict bool) {
	ahead := *run
	fillRun(&ahead, r.Outcome, r.Error, r)
	if err := n.store.PutPending(ctx, ahead); err != nil {
		return false, "record run ahead of its state change: " + err.Error(), false
	}
	_, err := n.store.ApplyState(ctx, d.rec.Name, run.ID, snap, r.Output.State)
	if err == nil {
		return true, "", false
	}
	n.dropPending(log, d.rec.Name, run.ID)
	if errors.Is(err, store.ErrConflict) {
		return false, "", true
	}
	r.Outcome, r.Error = sandbox.Error, "state: "+err.Error()
	return false, "", false
}

// Backoff between attempts of a run whose state write conflicted: from
// about 5 ms, doubling, to at most 250 ms. From the fourth attempt on, the
// run writes under the service's write lock (see attempt).
const (
	stateBackoffBase = 5 * time.Millisecond
	stateBackoffMax  = 250 * time.Millisecond
	serialOnConflict = 3
)

// safeCall is sandbox.Call with a panic anywhere below it turned into the
// Crashed outcome.
func safeCall(ctx context.Context, dep sandbox.Deployment, in contract.Input, timeout time.Duration) (res sandbox.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = sandbox.Result{Outcome: sandbox.Crashed, Error: fmt.Sprintf("panic in the runner: %v", p)}, nil
		}
	}()
	return sandbox.Call(ctx, dep, in, timeout)
}

func (n *Node) dropPending(log *slog.Logger, service, id string) {
	if err := n.store.DeletePending(context.Background(), service, id); err != nil {
		log.Warn("drop pending run", logErr, err)
	}
}

// fillRun sets the run's outcome and what goes with it.
func fillRun(run *store.Run, outcome sandbox.Outcome, detail string, res *sandbox.Result) {
	run.Outcome = string(outcome)
	run.Duration = time.Since(run.Start)
	run.Noop, run.Error, run.Output = "", "", nil
	switch outcome {
	case sandbox.Noop:
		run.Noop = res.Output.Noop
	case sandbox.Skipped:
		run.Noop = detail
	default:
		run.Error = detail
	}
	if res == nil {
		run.Digest, run.Driver = "", "" // it never reached the driver: no usage record
	}
	if res != nil {
		run.Usage = store.Usage{WallNS: int64(res.Usage.Wall), CPUNS: int64(res.Usage.CPU), PeakMemory: res.Usage.PeakMemory,
			MemoryScope: res.Usage.MemoryScope, StartNS: int64(res.Usage.Start), Counters: res.Usage.Counters, CountersDropped: res.Usage.CountersDropped,
			NetworkRx: res.Usage.NetworkRx, NetworkTx: res.Usage.NetworkTx}
		// A run rejected for its actions keeps the output it returned, to
		// show what was refused; its outcome says none of it took effect.
		if outcome == sandbox.OK || outcome == sandbox.Noop || outcome == sandbox.Rejected && len(res.Output.Actions) > 0 {
			out := res.Output
			run.Output = &out
		}
	}
}

// finish fills the run's outcome, updates health and metrics, records the
// run and logs it. pending says the run was written ahead of its state:
// once recorded, the write-ahead copy goes. A run the store could not
// record is returned with the error: it is not done.
func (n *Node) finish(log *slog.Logger, d *deployed, run store.Run, outcome sandbox.Outcome, detail string, res *sandbox.Result, pending bool) (store.Run, error) {
	fillRun(&run, outcome, detail, res)
	wasHealthy := d.health.State().Healthy
	switch outcome {
	case sandbox.OK, sandbox.Noop:
		d.health.Success()
	case sandbox.Error, sandbox.Timeout, sandbox.Crashed, sandbox.OOM, sandbox.Rejected:
		if d.health.Failure(time.Now()) {
			st := d.health.State()
			log.Warn("service unhealthy", "failures", st.Failures, "skip_until", st.SkipUntil)
		}
	}
	n.notifyHealth(d, wasHealthy, run)
	n.metrics.observe(d.rec.Name, run.Outcome, run.Duration)
	if err := n.record(run); err != nil {
		log.Error("run not recorded", logOutcome, run.Outcome, logErr, err)
		return run, &server.Error{Kind: server.ErrUnavailable, Msg: fmt.Sprintf("run %s ended %s but the store did not record it: %v", run.ID, run.Outcome, err), Run: ptr(apiRun(run)), RetryAfter: retryUnavailable}
	}
	if pending {
		n.dropPending(log, d.rec.Name, run.ID)
	}
	n.notify(run.Owner, runFinished(run))
	switch outcome {
	case sandbox.OK:
		log.Info("run", logOutcome, run.Outcome, "duration", run.Duration, "actions", len(run.Output.Actions), "emits", len(run.Output.Emit))
	case sandbox.Noop, sandbox.Skipped:
		log.Info("run", logOutcome, run.Outcome, "duration", run.Duration, "reason", run.Noop)
	default:
		log.Warn("run", logOutcome, run.Outcome, "duration", run.Duration, "error", truncate(run.Error, 512))
	}
	return run, nil
}

// record appends a run to the store, retrying briefly: a store that stays
// unavailable makes the run an error to its caller (it is not done), and
// the node keeps retrying it in the background until it is stored.
func (n *Node) record(run store.Run) error {
	var err error
	for i, wait := 0, 50*time.Millisecond; i < 3; i, wait = i+1, wait*4 {
		// A store known not to write answers no publish: do not wait 5 s
		// for each attempt.
		if herr := n.bus.Health(); herr != nil {
			err = herr
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = n.save(ctx, run)
		cancel()
		if err == nil {
			return nil
		}
		if i < 2 {
			time.Sleep(wait)
		}
	}
	n.unrecorded.add(run)
	return err
}

// save plans run's executions in the ledger, records the run and starts
// them: an acknowledged run's actions are never lost, and the actions of
// a run that was not recorded are never executed. Both steps are
// idempotent (the ledger keeps what was planned; the run's id is its
// record's message id), so save may be retried.
func (n *Node) save(ctx context.Context, run store.Run) error {
	if f := n.saveFault.Load(); f != nil {
		if err := (*f)(run); err != nil {
			return err
		}
	}
	plans, err := n.planRun(ctx, run)
	if err != nil {
		return err
	}
	if err := n.store.AppendRun(ctx, run); err != nil {
		return err
	}
	n.startExecutions(plans)
	return nil
}

var runIDEncoding = sandbox.RunIDEncoding

// newRunID returns a 20-character id that sorts by creation time (48 bits of
// milliseconds, then 48 random bits).
func newRunID() string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	crand.Read(b[6:])
	return runIDEncoding.EncodeToString(b[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func ptr[T any](v T) *T { return &v }

// overlay is base with over's keys laid over it (a flow module's config
// over its service's); base itself is not changed.
func overlay(base, over map[string]any) map[string]any {
	if len(over) == 0 {
		return base
	}
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}
