package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/flow"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// The runner API's startFlow and stopFlow, and a flow's input: the HTTP
// side of flowrun.go.

// StartFlow implements server.FlowRunner: check the flow against the
// services and runtimes there are now, mark it running and run it.
// Starting a running flow changes nothing.
func (n *Node) StartFlow(ctx context.Context, p server.Principal, id string) (api.Flow, error) {
	if f, done, err := forwardFlow[api.Flow](ctx, n, p, flowCall{Op: "start", ID: id}); done {
		return f, err
	}
	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return api.Flow{}, err
	}
	if r.Running && n.runningFlow(id) != nil {
		return n.Flow(ctx, p, id)
	}
	fl, err := decodeFlow(r)
	if err != nil {
		return api.Flow{}, err
	}
	if err := n.runnable(ctx, r.Owner, &fl); err != nil {
		return api.Flow{}, err
	}
	if err := n.makeInline(ctx, r.Owner, &fl); err != nil {
		return api.Flow{}, err
	}
	if !r.Running || n.place != nil && r.Node != n.cfg.Name {
		r.Running = true
		if n.place != nil {
			r.Node = n.cfg.Name // a cluster runs it here, where it was started
		}
		if r.Revision, err = n.putFlow(ctx, r); err != nil {
			return api.Flow{}, err
		}
	}
	if err := n.startFlow(ctx, r); err != nil {
		r.Running = false
		if _, perr := n.putFlow(ctx, r); perr != nil {
			n.log.Error("flow marked running but not started", "flow", id, logErr, perr)
		}
		return api.Flow{}, err
	}
	return n.Flow(ctx, p, id)
}

// runnable says why fl cannot run now, as a 409 listing every problem:
// checked against the services its owner may use and the runtimes enabled
// now (either may have changed since it was applied).
func (n *Node) runnable(ctx context.Context, owner string, fl *flow.Flow) error {
	cat, err := n.flowCatalog(ctx, ownerPrincipal(owner))
	if err != nil {
		return err
	}
	e := server.Errorf(server.ErrConflict, "flow %s cannot run on this node now", fl.ID)
	var errs flow.Errors
	if err := flow.Check(fl, cat.Catalog); errors.As(err, &errs) {
		for _, fe := range errs {
			e.Problems = append(e.Problems, fe.Error())
		}
	} else if err != nil {
		e.Problems = append(e.Problems, err.Error())
	}
	e.Problems = append(e.Problems, n.flowHookConflicts(fl)...)
	if len(e.Problems) > 0 {
		return e
	}
	return nil
}

// putFlow writes r over its revision and returns the new one.
func (n *Node) putFlow(ctx context.Context, r store.FlowRecord) (uint64, error) {
	rev, err := n.store.PutFlow(ctx, r, r.Revision)
	if errors.Is(err, store.ErrConflict) {
		return 0, server.Errorf(server.ErrConflict, "flow %s was changed meanwhile; try again", r.ID)
	}
	return rev, err
}

// StopFlow implements server.FlowRunner: the flow runs in flight end (up
// to flowDrain; the rest run at the next start) and nothing more is taken
// from the flow's queue. Stopping a stopped flow changes nothing.
func (n *Node) StopFlow(ctx context.Context, p server.Principal, id string) (api.Flow, error) {
	if f, done, err := forwardFlow[api.Flow](ctx, n, p, flowCall{Op: "stop", ID: id}); done {
		return f, err
	}
	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return api.Flow{}, err
	}
	if r.Running {
		r.Running = false
		if _, err := n.putFlow(ctx, r); err != nil {
			return api.Flow{}, err
		}
	}
	n.stopFlow(id, true)
	if err := n.store.CloseFlowQueue(ctx, id); err != nil {
		n.log.Warn("flow stopped, its queue's reader not removed", "flow", id, logErr, err)
	}
	return n.Flow(ctx, p, id)
}

// FireFlow implements server.FlowRunner: store message in the flow's
// queue (it is not lost from then on) and, with wait, wait for its flow
// run. A stopped flow refuses it (409), a full queue too (429, retry).
func (n *Node) FireFlow(ctx context.Context, p server.Principal, id string, message []byte, module string, wait time.Duration) (api.FlowRun, error) {
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return api.FlowRun{}, err
	}
	if len(message) > 0 && !json.Valid(message) {
		return api.FlowRun{}, server.Errorf(server.ErrInvalid, "message: must be valid JSON")
	}
	if len(message) > store.MaxFlowMessage {
		return api.FlowRun{}, server.Errorf(server.ErrTooLarge, "message: at most %d bytes, got %d", store.MaxFlowMessage, len(message))
	}
	if module != "" {
		if err := hasModule(r, module); err != nil {
			return api.FlowRun{}, err
		}
	}
	if wait > 0 { // the flow run is waited for where it runs; a message alone is queued here
		if r, done, err := forwardFlow[api.FlowRun](ctx, n, p, flowCall{Op: "fire", ID: id, Message: message, Module: module, WaitMS: wait.Milliseconds()}); done {
			return r, err
		}
	}
	// A running flow takes the message even while a new version takes
	// over (its exec is swapped): the queue holds it meanwhile.
	if !r.Running {
		return api.FlowRun{}, server.Errorf(server.ErrConflict, "flow %s is stopped: start it first (andromeda flow start %s)", id, id)
	}
	if err := n.gate.admit(workFire, "flow:"+id); err != nil {
		return api.FlowRun{}, &server.Error{Kind: server.ErrUnavailable, Msg: err.Error(), RetryAfter: retryUnavailable}
	}
	m := store.FlowMessage{Run: newRunID(), Module: module, Message: message, At: time.Now().UTC(), By: p.Name}
	return n.enqueueFlow(ctx, id, r.Version, m, wait)
}

// enqueueFlow stores m in flow id's queue and, with wait, waits for its
// flow run; a full queue is 429.
func (n *Node) enqueueFlow(ctx context.Context, id, version string, m store.FlowMessage, wait time.Duration) (api.FlowRun, error) {
	var done <-chan flowResult
	if wait > 0 {
		var cancel func()
		done, cancel = n.waitFlowRun(m.Run)
		defer cancel()
	}
	if _, err := n.store.EnqueueFlowMessage(ctx, id, m); err != nil {
		if errors.Is(err, store.ErrFull) {
			return api.FlowRun{}, &server.Error{Kind: server.ErrBusy, Msg: err.Error(), RetryAfter: retryBusy}
		}
		return api.FlowRun{}, &server.Error{Kind: server.ErrUnavailable, Msg: "the message was not stored: " + err.Error(), RetryAfter: retryUnavailable}
	}
	queued := api.FlowRun{ID: m.Run, Flow: id, Version: version, Start: m.At, Outcome: "queued", Steps: []api.FlowStep{}, RerunOf: m.RerunOf, By: m.By}
	if wait <= 0 {
		return queued, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case res := <-done:
		if res.err != nil {
			return api.FlowRun{}, &server.Error{Kind: server.ErrUnavailable, Msg: fmt.Sprintf("flow run %s ended %s but the store did not record it (it runs again at the flow's next start): %v", m.Run, res.run.Outcome, res.err), RetryAfter: retryUnavailable}
		}
		return apiFlowRun(res.run), nil
	case <-t.C:
		return queued, nil
	case <-ctx.Done():
		return api.FlowRun{}, ctx.Err()
	}
}

// RerunFlow implements server.FlowRunner: failed flow run runID of flow
// id runs again from module from (default: the module it failed at), in
// a new flow run that starts with the message the module got then: the
// flow's input, or what the module before it emitted, read from that
// run's record.
func (n *Node) RerunFlow(ctx context.Context, p server.Principal, id, runID, from string, wait time.Duration) (api.FlowRun, error) {
	if r, done, err := forwardFlow[api.FlowRun](ctx, n, p, flowCall{Op: "rerun", ID: id, Run: runID, From: from, WaitMS: wait.Milliseconds()}); done {
		return r, err
	}
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return api.FlowRun{}, err
	}
	if !r.Running || n.runningFlow(id) == nil {
		return api.FlowRun{}, server.Errorf(server.ErrConflict, "flow %s is stopped: start it first (andromeda flow start %s)", id, id)
	}
	orig, err := n.store.FlowRun(ctx, id, runID)
	if err != nil {
		return api.FlowRun{}, err
	}
	if orig.Outcome != "failed" {
		return api.FlowRun{}, server.Errorf(server.ErrConflict, "flow run %s ended %s: only a failed flow run is re-run", runID, orig.Outcome)
	}
	from = cmp.Or(from, orig.Module)
	var step *store.FlowStep
	for i := range orig.Steps {
		s := &orig.Steps[i]
		if s.Module != from {
			continue
		}
		ended := func(s *store.FlowStep) bool {
			return s.Outcome == string(sandbox.OK) || s.Outcome == string(sandbox.Noop)
		}
		if step == nil || ended(step) && !ended(s) {
			step = s // the first failed step at the module, else its first
		}
	}
	if step == nil {
		var reached []string
		for _, s := range orig.Steps {
			if !slices.Contains(reached, s.Module) {
				reached = append(reached, s.Module)
			}
		}
		return api.FlowRun{}, server.Errorf(server.ErrInvalid, "from: flow run %s did not reach module %q (it reached: %s)", runID, from, strings.Join(reached, ", "))
	}
	input, err := n.stepInput(ctx, orig, step)
	if err != nil {
		return api.FlowRun{}, err
	}
	m := store.FlowMessage{Run: newRunID(), Module: from, Message: input, At: time.Now().UTC(), By: p.Name, RerunOf: runID}
	n.log.Info("flow run re-run", "flow", id, "flow_run", runID, "from", from, "new_flow_run", m.Run, "by", p.Name)
	return n.enqueueFlow(ctx, id, r.Version, m, wait)
}

// stepInput is the message step of flow run fr got: the flow run's input,
// or the emit of the run that sent it.
func (n *Node) stepInput(ctx context.Context, fr store.FlowRun, step *store.FlowStep) (json.RawMessage, error) {
	if step.From == "" {
		if fr.InputCut {
			return nil, server.Errorf(server.ErrConflict, "flow run %s: its input was larger than %d bytes and not kept; fire it again instead", fr.ID, store.MaxKeptInput)
		}
		return fr.Input, nil
	}
	var sender *store.FlowStep
	for i := range fr.Steps {
		if fr.Steps[i].Run == step.From {
			sender = &fr.Steps[i]
		}
	}
	// A message's id is the sending run's id, the emit's index and the
	// wire's index; an error port's is the run's id, "error" and the wire.
	parts := strings.Split(strings.TrimPrefix(step.Message, step.From+"."), ".")
	if sender == nil || len(parts) != 2 {
		return nil, server.Errorf(server.ErrConflict, "flow run %s: the record does not say what module %s got (its sender's step is not kept)", fr.ID, step.Module)
	}
	if parts[0] == flow.PortError {
		return nil, server.Errorf(server.ErrConflict, "flow run %s: module %s got a failure from %s's error port; re-run from %s", fr.ID, step.Module, sender.Module, sender.Module)
	}
	i, err := strconv.Atoi(parts[0])
	if err != nil {
		return nil, server.Errorf(server.ErrConflict, "flow run %s: message id %s of module %s does not parse", fr.ID, step.Message, step.Module)
	}
	run, err := n.store.Run(ctx, sender.Service, sender.Run)
	if err != nil {
		return nil, fmt.Errorf("flow run %s: the run %s of %s that sent module %s its message: %w", fr.ID, sender.Run, sender.Module, step.Module, err)
	}
	if run.Output == nil || i >= len(run.Output.Emit) {
		return nil, server.Errorf(server.ErrConflict, "flow run %s: run %s of %s was recorded without its output (truncated), so what it sent %s is not known", fr.ID, run.ID, sender.Module, step.Module)
	}
	return run.Output.Emit[i].Message, nil
}

// FlowRuns implements server.FlowRunner. The dead letters are looked for
// among the flow's last maxDeadLetterScan runs.
func (n *Node) FlowRuns(ctx context.Context, p server.Principal, id string, limit int, dead bool) ([]api.FlowRun, error) {
	if _, err := n.ownedFlow(ctx, p, id); err != nil {
		return nil, err
	}
	scan := limit
	if dead {
		scan = maxDeadLetterScan
	}
	recs, err := n.store.FlowRuns(ctx, id, scan)
	if err != nil {
		return nil, err
	}
	out := make([]api.FlowRun, 0, min(len(recs), limit))
	for _, r := range recs {
		if len(out) < limit && (!dead || r.DeadLetter) {
			out = append(out, apiFlowRun(r))
		}
	}
	return out, nil
}

// maxDeadLetterScan is how many of a flow's last runs a list of its dead
// letters looks through.
const maxDeadLetterScan = 1000

// apiFlowRun is a flow run record as the API shows it.
func apiFlowRun(r store.FlowRun) api.FlowRun {
	out := api.FlowRun{ID: r.ID, Flow: r.Flow, Version: r.Version, Start: r.Start, Duration: r.Duration, Outcome: r.Outcome,
		Error: r.Error, Module: r.Module, Steps: make([]api.FlowStep, len(r.Steps)), Dropped: r.Dropped, StepsCut: r.StepsCut, Replayed: r.Replayed,
		Input: r.Input, RerunOf: r.RerunOf, DeadLetter: r.DeadLetter, By: r.By}
	for i, s := range r.Steps {
		out.Steps[i] = api.FlowStep(s)
	}
	return out
}

var _ server.FlowRunner = (*Node)(nil)

// SetBreakpoint implements server.FlowRunner (setBreakPointAtModule and
// removeBreakPointAtModule): the breakpoint is kept in the flow's record,
// so it holds again after a restart and across versions that keep the
// module. Setting a set one, or removing an absent one, changes nothing.
func (n *Node) SetBreakpoint(ctx context.Context, p server.Principal, id, module string, on bool) (api.Flow, error) {
	if f, done, err := forwardFlow[api.Flow](ctx, n, p, flowCall{Op: "break", ID: id, Module: module, On: on}); done {
		return f, err
	}
	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return api.Flow{}, err
	}
	if err := hasModule(r, module); err != nil {
		return api.Flow{}, err
	}
	if slices.Contains(r.Breakpoints, module) != on {
		if on {
			r.Breakpoints = append(r.Breakpoints, module)
			slices.Sort(r.Breakpoints)
		} else {
			r.Breakpoints = slices.DeleteFunc(r.Breakpoints, func(b string) bool { return b == module })
		}
		if _, err := n.putFlow(ctx, r); err != nil {
			return api.Flow{}, err
		}
		n.log.Info("flow breakpoint", "flow", id, "module", module, "set", on, "by", p.Name)
	}
	if e := n.runningFlow(id); e != nil && e.modules[module] != nil {
		e.modules[module].setHeld(on)
	}
	return n.Flow(ctx, p, id)
}

// stepping is running flow id's exec for a single step by p, counted in
// its workers (e.wg) under the flow lock, which every stop holds: the
// stop that ends it waits for the step.
func (n *Node) stepping(ctx context.Context, p server.Principal, id string) (*flowExec, error) {
	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	r, err := n.ownedFlow(ctx, p, id)
	if err != nil {
		return nil, err
	}
	e := n.runningFlow(id)
	switch {
	case e == nil:
		return nil, server.Errorf(server.ErrConflict, "flow %s is stopped: start it first (andromeda flow start %s)", id, id)
	case len(r.Breakpoints) == 0:
		return nil, server.Errorf(server.ErrConflict, "flow %s has no breakpoint, so nothing is held to step: set one first (andromeda flow break %s/MODULE)", id, id)
	}
	e.wg.Add(1)
	return e, nil
}

// StepFlow implements server.FlowRunner (singleStepFlow): each message
// held at a breakpoint of the running flow goes one module further.
func (n *Node) StepFlow(ctx context.Context, p server.Principal, id string) (api.FlowStepResult, error) {
	if r, done, err := forwardFlow[api.FlowStepResult](ctx, n, p, flowCall{Op: "step", ID: id}); done {
		return r, err
	}
	e, err := n.stepping(ctx, p, id)
	if err != nil {
		return nil, err
	}
	// The step holds the exec as its workers do, not the node's flow
	// lock: a module run that waits (its service not deployed here yet, a
	// page away) must not keep every flow's apply, start and stop
	// waiting. A stop waits for the step, and halts its module runs.
	defer e.wg.Done()
	out := api.FlowStepResult{}
	for module, runs := range e.singleStep() {
		ms := api.FlowModuleStep{InputStates: []json.RawMessage{}, OutputStates: [][]api.FlowStepOutput{}, Errors: []string{}, Runs: []string{}}
		for _, so := range runs {
			outs := []api.FlowStepOutput{}
			for _, o := range so.outputs {
				outs = append(outs, api.FlowStepOutput{Port: o.port, Message: o.message, To: append([]string{}, o.to...)})
			}
			ms.InputStates = append(ms.InputStates, orNull(so.input))
			ms.OutputStates = append(ms.OutputStates, outs)
			ms.Errors = append(ms.Errors, strings.Join(so.errors, "; "))
			ms.Runs = append(ms.Runs, so.run)
		}
		out[module] = ms
	}
	return out, nil
}

// orNull is m, or JSON null for no message.
func orNull(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage("null")
	}
	return m
}

// decodeFlow is the flow document of r.
func decodeFlow(r store.FlowRecord) (flow.Flow, error) {
	var fl flow.Flow
	if err := json.Unmarshal(r.Flow, &fl); err != nil {
		return flow.Flow{}, fmt.Errorf("flow %s does not decode: %w", r.ID, store.ErrDamaged)
	}
	return fl, nil
}

// hasModule says, as a 400 naming the field module, that the version of
// flow r has no module id.
func hasModule(r store.FlowRecord, id string) error {
	fl, err := decodeFlow(r)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(fl.Modules, func(m flow.Module) bool { return m.ID == id }) {
		return server.Errorf(server.ErrInvalid, "module: flow %s (version %s) has no module %q", r.ID, r.Version, id)
	}
	return nil
}
