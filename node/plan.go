package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Plan implements server.PlanBackend: run a service once on its current
// state, as a manual fire would, and answer with what the run would
// execute (each execution, and the signed envelope with its digest),
// executing nothing, writing no state, publishing no emit and recording
// no run. The actions are judged as for a real run, so a plan shows a
// rejection too; the per-minute caps are not taken from.
func (n *Node) Plan(ctx context.Context, name string, message json.RawMessage) (api.Run, error) {
	d, err := n.deployedFor(ctx, name, message)
	if err != nil {
		return api.Run{}, err
	}
	select {
	case d.sem <- struct{}{}:
		defer func() { <-d.sem }()
	default:
		return api.Run{}, &server.Error{Kind: server.ErrBusy, Msg: fmt.Sprintf("concurrency limit reached (resources.concurrency = %d): try the plan again", cap(d.sem)), RetryAfter: retryBusy}
	}
	ev := trigger.Event{Service: name, Trigger: d.manualName, Kind: trigger.KindManual, At: time.Now().UTC(), Message: message}
	run := store.Run{
		ID: newRunID(), Service: d.rec.Name, Version: d.rec.Version, Owner: d.rec.Owner,
		Trigger: contract.Trigger{Kind: ev.Kind, Name: ev.Trigger, At: ev.At.Format(time.RFC3339Nano)},
		Start:   time.Now().UTC(), Attempts: 1,
	}
	var snap store.Snapshot
	if d.manifest.Capabilities.State {
		var err error
		if snap, err = n.store.State(ctx, name); err != nil {
			return api.Run{}, err
		}
	}
	dep, err := n.ensureDeployed(ctx, d)
	if err != nil {
		return api.Run{}, server.Errorf(server.ErrUnusable, "%v", err)
	}
	in := contract.Input{RunID: run.ID, Service: name, Trigger: run.Trigger, Message: message, State: snap.Values, Config: d.runConfig(&run)}
	r, err := safeCall(ctx, dep, in, d.timeout())
	if err != nil {
		return api.Run{}, fmt.Errorf("runner: %w", err)
	}
	if r.Outcome == sandbox.OK {
		if err := d.actionRules(n.executorFor).Check(r.Output); err != nil {
			r.Outcome, r.Error = sandbox.Rejected, err.Error()
		}
	}
	if (r.Outcome == sandbox.OK || r.Outcome == sandbox.Noop) && !r.Output.State.Empty() && !d.manifest.Capabilities.State {
		r.Outcome, r.Error = sandbox.Error, "state: the service changed state but its manifest does not grant capabilities.state"
	}
	fillRun(&run, r.Outcome, r.Error, &r)
	out := apiRun(run)
	out.Plan = true
	if r.Outcome == sandbox.OK {
		out.Executions = apiExecutions(n.exec.plan(run, runTarget{target: d.manifest.Target}))
	}
	return out, nil
}

// RunByID implements server.PlanBackend: the run with id among the
// services p may see, with its executions.
func (n *Node) RunByID(ctx context.Context, p server.Principal, id string) (api.Run, error) {
	svcs, err := n.store.Services(ctx)
	if err != nil {
		return api.Run{}, err
	}
	for _, s := range svcs {
		if !p.Operator() && s.Owner != p.Name {
			continue
		}
		r, err := n.Run(ctx, p, s.Name, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		return r, err
	}
	return api.Run{}, fmt.Errorf("run %s: %w", id, store.ErrNotFound)
}
