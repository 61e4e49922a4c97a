package node

import (
	"fmt"

	"github.com/andromeda-runner/andromeda/action"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/executor"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// actionRules are the rules d's runs keep to: the action kinds its
// admitted manifest declares, and its caps, as the admitted decision
// clamped them.
func (d *deployed) actionRules(executorFor func(kind string) bool) action.Rules {
	caps := d.manifest.Capabilities.Caps
	r := action.Rules{
		Kinds:      d.manifest.Capabilities.Actions,
		PerRun:     contract.MaxActions,
		PerRunRule: "the contract's limit",
		CapsRule:   "capabilities.caps.params",
	}
	if caps.ActionsPerRun > 0 {
		r.PerRun, r.PerRunRule = caps.ActionsPerRun, "capabilities.caps.actions_per_run"
	}
	// The decision's cap is the service's, clamped by the policy's
	// limits.actions_per_run; decisions made before it existed have none.
	if lim := d.rec.Decision.Limits.ActionsPerRun; lim > 0 && lim < r.PerRun {
		r.PerRun, r.PerRunRule = lim, "limits.actions_per_run of the node's policy"
	}
	if len(caps.Params) > 0 {
		r.Caps = caps.Params
	}
	// Where actions may reach: an http action only the hosts of the
	// service's network grant, a submit only the service's own target,
	// and other kinds only with an executor registered on this node.
	grant := executor.Grant{Any: d.manifest.Capabilities.Network.Any, Hosts: d.manifest.Capabilities.Network.Hosts}
	r.URL = grant.Allowed
	r.Target, r.CheckTarget = d.manifest.Target, true
	r.Executor = executorFor
	return r
}

// judgeActions turns an ok result whose actions break d's rules into a
// rejected one, with every broken rule as its error. Its output stays on
// the result, to be recorded as the run's rejected output: nothing of it
// is executed, its state change is not committed and its emits are not
// published. Under capabilities.caps.actions_per_minute, the actions of
// an ok result are taken from the minute's budget: the caller gives them
// back (giveBack) if they do not take effect after all.
func (d *deployed) judgeActions(r *sandbox.Result, executorFor func(kind string) bool) (taken *stamp) {
	if r.Outcome != sandbox.OK {
		return nil
	}
	if err := d.actionRules(executorFor).Check(r.Output); err != nil {
		r.Outcome, r.Error = sandbox.Rejected, err.Error()
		return nil
	}
	limit, n := d.manifest.Capabilities.Caps.ActionsPerMinute, len(r.Output.Actions)
	if limit == 0 || n == 0 {
		return nil
	}
	s, ok, used := d.rates.takeActions(n, limit)
	if !ok {
		r.Outcome = sandbox.Rejected
		r.Error = fmt.Sprintf("actions: %d actions with the %d of the last minute are above the cap of %d per minute (capabilities.caps.actions_per_minute)", n, used, limit)
		return nil
	}
	return &s
}

// overRunRate says why a run of d may not start now, under
// capabilities.caps.runs_per_minute, or "" when it may; a run that may
// start is counted.
func (d *deployed) overRunRate() string {
	limit := d.manifest.Capabilities.Caps.RunsPerMinute
	if limit == 0 {
		return ""
	}
	if ok, n := d.rates.startRun(limit); !ok {
		return fmt.Sprintf("skipped: rate cap reached (%d runs started in the last minute, capabilities.caps.runs_per_minute = %d)", n, limit)
	}
	return ""
}
