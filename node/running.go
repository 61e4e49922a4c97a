package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// The runs in flight (the seed's run_command and kill_command): every
// run that took its slot is in the node's inflight registry until it is
// recorded, with what a listing shows and a kill switch. Cancelling a run
// cancels its driver call with a cause that names who asked: the driver
// cancels cooperatively where it can (the process driver's cancel
// message) and by force after its grace (the worker killed and, in
// server mode, replaced; a wasm instance closed), and the run is recorded
// with outcome cancelled and that cause as its error. Store work around
// the call (state reads, the state commit, the record) is never cut short
// by a kill: a run whose guest returned before the kill took effect is
// recorded as what it was.

// Bounds of the run API.
const (
	// cancelWait is how long a cancel request waits for the run to be
	// recorded before it answers that the run is still being cancelled.
	cancelWait = 15 * time.Second
	// maxWait is the longest a caller may wait on one run per request.
	maxWait = time.Minute
	// maxArgs and maxArgBytes bound an argument vector.
	maxArgs     = 4096
	maxArgBytes = 128 << 10
)

// inflight is the registry of runs in flight, by run id. The zero value
// is ready; safe for concurrent use.
type inflight struct {
	mu   sync.Mutex
	runs map[string]*flight
	// expect holds, by run id, a channel closed when that run takes its
	// slot (fire --detach waits on it).
	expect map[string]chan struct{}
}

// flight is one run in flight.
type flight struct {
	id, service, version, owner string
	trigger                     contract.Trigger
	start                       time.Time
	// kill is cancelled, with a *cancelled cause, to kill the run.
	killCtx context.Context
	kill    context.CancelCauseFunc
	// done is closed once the run is recorded (or failed to be); run,
	// err and recorded are set before.
	done     chan struct{}
	run      store.Run
	err      error
	recorded time.Time

	mu        sync.Mutex
	cancelled *cancelled // who asked, once someone did
}

// cancelled is the cause a killed run's driver call is cancelled with.
type cancelled struct {
	by string
	at time.Time
}

func (c *cancelled) Error() string {
	return fmt.Sprintf("cancelled by %s at %s", c.by, c.at.Format(time.RFC3339Nano))
}

// begin puts run in the registry as it takes its slot.
func (f *inflight) begin(run store.Run) *flight {
	fl := &flight{
		id: run.ID, service: run.Service, version: run.Version, owner: run.Owner,
		trigger: run.Trigger, start: run.Start,
		done: make(chan struct{}),
	}
	fl.killCtx, fl.kill = context.WithCancelCause(context.Background())
	f.mu.Lock()
	if f.runs == nil {
		f.runs = map[string]*flight{}
	}
	f.runs[run.ID] = fl
	if ch, ok := f.expect[run.ID]; ok {
		close(ch)
		delete(f.expect, run.ID)
	}
	f.mu.Unlock()
	return fl
}

// end takes fl out of the registry once its run was recorded (err nil)
// or could not be, and wakes those waiting on it.
func (f *inflight) end(fl *flight, run store.Run, err error) {
	fl.run, fl.err, fl.recorded = run, err, time.Now().UTC()
	f.mu.Lock()
	delete(f.runs, fl.id)
	f.mu.Unlock()
	fl.kill(nil)
	close(fl.done)
}

// get returns the run in flight with id, or nil.
func (f *inflight) get(id string) *flight {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[id]
}

// await returns a channel closed when the run with id takes its slot,
// and a func to stop waiting.
func (f *inflight) await(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	if f.expect == nil {
		f.expect = map[string]chan struct{}{}
	}
	f.expect[id] = ch
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		delete(f.expect, id)
		f.mu.Unlock()
	}
}

// list returns the runs in flight that keep says to keep, oldest first.
func (f *inflight) list(keep func(*flight) bool) []*flight {
	f.mu.Lock()
	var out []*flight
	for _, fl := range f.runs {
		if keep(fl) {
			out = append(out, fl)
		}
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b *flight) int {
		if c := a.start.Compare(b.start); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return out
}

// bind returns ctx cancelled, with the kill's cause, when the run with
// id is killed (at once if it already was), and the func that releases
// the binding. A run not in the registry binds to nothing.
func (f *inflight) bind(ctx context.Context, id string) (context.Context, func()) {
	fl := f.get(id)
	if fl == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(fl.killCtx, func() { cancel(context.Cause(fl.killCtx)) })
	return ctx, func() { stop(); cancel(nil) }
}

// killed returns the kill of run id once one was asked for, or nil. It
// is set as the kill is asked for, while the context bind returns is
// cancelled a moment later (context.AfterFunc runs in a goroutine of its
// own): a driver that ends the call first, for the same stop, is still
// told apart from a runner failure.
func (f *inflight) killed(id string) *cancelled {
	fl := f.get(id)
	if fl == nil {
		return nil
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.cancelled
}

// killedBy returns the cause of a run's kill when ctx ended because of
// it, or nil.
func killedBy(ctx context.Context) *cancelled {
	var c *cancelled
	if errors.As(context.Cause(ctx), &c) {
		return c
	}
	return nil
}

// view is what a listing shows of a run in flight.
func (fl *flight) view() api.RunInFlight {
	v := api.RunInFlight{
		ID: fl.id, Service: fl.service, Version: fl.version, Owner: fl.owner,
		Trigger: fl.trigger, Start: fl.start, Status: api.RunRunning,
	}
	fl.mu.Lock()
	if c := fl.cancelled; c != nil {
		v.Status, v.CancelledBy, v.CancelledAt = api.RunCancelling, c.by, c.at
	}
	fl.mu.Unlock()
	return v
}

// cancel kills the run on behalf of by; the first caller's cause is
// the one recorded.
func (fl *flight) cancel(by string) {
	c := &cancelled{by: by, at: time.Now().UTC()}
	fl.mu.Lock()
	if fl.cancelled == nil {
		fl.cancelled = c
	} else {
		c = fl.cancelled
	}
	fl.mu.Unlock()
	fl.kill(c)
}

// visible reports whether p may see and cancel fl: an operator every
// run, a submitter the runs of its own services.
func (fl *flight) visible(p server.Principal) bool {
	return p.Operator() || fl.owner == p.Name
}

// Running implements server.RunBackend: the runs in flight the caller may
// see, of one service or of all, oldest first.
func (n *Node) Running(ctx context.Context, p server.Principal, service string) ([]api.RunInFlight, error) {
	if service != "" {
		if _, err := n.owned(ctx, p, service); err != nil {
			return nil, err
		}
	}
	fls := n.inflight.list(func(fl *flight) bool {
		return fl.visible(p) && (service == "" || fl.service == service)
	})
	out := make([]api.RunInFlight, len(fls))
	for i, fl := range fls {
		out[i] = fl.view()
	}
	return out, nil
}

// Cancel implements server.RunBackend: kill a run in flight and wait,
// at most cancelWait, for it to be recorded. A run that finished (or
// finished before the kill took effect) is server.ErrConflict naming its
// outcome; an unknown id, or a run of a service the caller may not see,
// store.ErrNotFound.
func (n *Node) Cancel(ctx context.Context, p server.Principal, id string) (api.CancelResult, error) {
	fl := n.inflight.get(id)
	if fl == nil || !fl.visible(p) {
		r, err := n.RunByID(ctx, p, id)
		if errors.Is(err, store.ErrNotFound) {
			// Not recorded: in a cluster it may be in flight on another node.
			if res, done, ferr := n.cancelElsewhere(ctx, p, id); done {
				return res, ferr
			}
		}
		if err != nil {
			return api.CancelResult{}, err
		}
		return api.CancelResult{}, &server.Error{Kind: server.ErrConflict, Msg: fmt.Sprintf("run %s already finished: outcome %s", id, r.Outcome), Run: &r}
	}
	fl.cancel(p.Name)
	n.log.Info("run cancel asked", logService, fl.service, logRun, id, "by", p.Name)
	timer := time.NewTimer(cancelWait)
	defer timer.Stop()
	select {
	case <-fl.done:
	case <-timer.C:
		return api.CancelResult{Run: fl.view()}, nil
	case <-ctx.Done():
		return api.CancelResult{}, ctx.Err()
	}
	run := apiRun(fl.run)
	if fl.err != nil {
		return api.CancelResult{}, fl.err
	}
	if fl.run.Outcome != string(sandbox.Cancelled) {
		return api.CancelResult{}, &server.Error{Kind: server.ErrConflict, Msg: fmt.Sprintf("run %s finished before it could be cancelled: outcome %s", id, run.Outcome), Run: &run}
	}
	return api.CancelResult{Run: fl.view(), Recorded: &run, RecordedAt: fl.recorded}, nil
}

// WaitRun implements server.RunBackend: the run with id once it is
// recorded, waiting for it at most timeout (bounded by maxWait); done is
// false when it is still in flight then. The error is the one its
// fire would have had (server.ErrUnavailable for a run the store did not
// record), or store.ErrNotFound for an unknown id.
func (n *Node) WaitRun(ctx context.Context, p server.Principal, id string, timeout time.Duration) (run api.Run, inFlight api.RunInFlight, done bool, err error) {
	fl := n.inflight.get(id)
	if fl == nil || !fl.visible(p) {
		r, err := n.RunByID(ctx, p, id)
		return r, api.RunInFlight{}, err == nil, err
	}
	timer := time.NewTimer(min(max(timeout, 0), maxWait))
	defer timer.Stop()
	select {
	case <-fl.done:
		return apiRun(fl.run), api.RunInFlight{}, true, fl.err
	case <-timer.C:
		return api.Run{}, fl.view(), false, nil
	case <-ctx.Done():
		return api.Run{}, api.RunInFlight{}, false, ctx.Err()
	}
}

// FireRun implements server.RunBackend: Fire with an argument vector
// (input.args).
func (n *Node) FireRun(ctx context.Context, name string, message json.RawMessage, args []string) (api.Run, error) {
	if err := checkArgs(args); err != nil {
		return api.Run{}, err
	}
	d, ev, err := n.manualEvent(ctx, name, message)
	if err != nil {
		return api.Run{}, err
	}
	ev.Args = args
	return n.invokeFor(ctx, d, ev)
}

// FireDetached implements server.RunBackend: run a service now as Fire
// does, and answer as soon as the run took its slot, with its id. A run
// that cannot start (over its concurrency bound: recorded skipped) is
// the error Fire would return; one that ended before the answer is
// returned as recorded (finished true).
func (n *Node) FireDetached(ctx context.Context, name string, message json.RawMessage, args []string) (started api.RunInFlight, finished *api.Run, err error) {
	if err := checkArgs(args); err != nil {
		return api.RunInFlight{}, nil, err
	}
	d, ev, err := n.manualEvent(ctx, name, message)
	if err != nil {
		return api.RunInFlight{}, nil, err
	}
	ev.Args, ev.RunID = args, newRunID()
	slot, forget := n.inflight.await(ev.RunID)
	defer forget()
	type result struct {
		run store.Run
		err error
	}
	ended := make(chan result, 1)
	go func() {
		r, err := n.invoke(n.ctx, d, ev)
		ended <- result{r, err}
	}()
	select {
	case <-slot:
		if fl := n.inflight.get(ev.RunID); fl != nil {
			return fl.view(), nil, nil
		}
		r := <-ended // recorded already
		return api.RunInFlight{}, ptr(apiRun(r.run)), r.err
	case r := <-ended:
		if r.err != nil {
			return api.RunInFlight{}, nil, r.err
		}
		return api.RunInFlight{}, ptr(apiRun(r.run)), nil
	case <-ctx.Done():
		return api.RunInFlight{}, nil, ctx.Err()
	}
}

// checkArgs checks an argument vector against the bounds of the run API.
func checkArgs(args []string) error {
	if len(args) > maxArgs {
		return server.Errorf(server.ErrInvalid, "args: at most %d arguments, got %d", maxArgs, len(args))
	}
	total := 0
	for i, a := range args {
		total += len(a)
		switch {
		case !utf8.ValidString(a):
			return server.Errorf(server.ErrInvalid, "args[%d]: must be valid UTF-8", i)
		case strings.IndexByte(a, 0) >= 0:
			return server.Errorf(server.ErrInvalid, "args[%d]: must not contain a NUL character", i)
		}
	}
	if total > maxArgBytes {
		return server.Errorf(server.ErrInvalid, "args: at most %d bytes in all, got %d", maxArgBytes, total)
	}
	return nil
}

var _ server.RunBackend = (*Node)(nil)
