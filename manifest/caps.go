package manifest

import (
	"maps"
	"math"
	"regexp"
	"slices"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Caps bound what a service's runs may ask for, beyond the kinds it
// declares; a run asking for more is rejected, naming the cap, and nothing
// of it is executed. The node's policy may lower actions_per_run
// (limits.actions_per_run).
//
//	caps:
//	  actions_per_run: 10
//	  runs_per_minute: 60        # firings beyond it are skipped
//	  actions_per_minute: 100    # a run that would pass it is rejected
//	  params:
//	    submit: {amount: 1000}   # no submit action with params.amount above 1000
type Caps struct {
	// ActionsPerRun is the most actions one run may return, 1 to 256 (the
	// contract's limit). Default 256 (0 means the default).
	ActionsPerRun int `json:"actions_per_run,omitempty" yaml:"actions_per_run,omitempty"`
	// RunsPerMinute is the most runs that may start in any minute, 1 to
	// 100000; a firing beyond it is skipped (an event waits). Default
	// none (0).
	RunsPerMinute int `json:"runs_per_minute,omitempty" yaml:"runs_per_minute,omitempty"`
	// ActionsPerMinute is the most actions the runs of any minute may
	// return together, 1 to 100000; a run that would pass it is rejected.
	// Default none (0).
	ActionsPerMinute int `json:"actions_per_minute,omitempty" yaml:"actions_per_minute,omitempty"`
	// Params caps numeric params of actions, by kind then param name: an
	// action of that kind whose params hold the name with a number (or a
	// string holding a decimal number) above the cap is refused, and so is
	// one holding a value that is not a number; an action without the
	// param is not limited by it. Each kind must be one of
	// capabilities.actions; at most 16 params per kind, names matching
	// [A-Za-z_][A-Za-z0-9_-]{0,63}, caps finite numbers ≥ 0. Default none.
	Params map[string]map[string]float64 `json:"params,omitempty" yaml:"params,omitempty"`
}

// Bounds of Caps.
const (
	maxActionsPerRun = 256 // contract.MaxActions
	maxCappedParams  = 16
	maxPerMinute     = 100000
)

var paramRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,63}$`)

// normalize turns an empty params map into nil.
func (c *Caps) normalize() {
	if len(c.Params) == 0 {
		c.Params = nil
	}
}

func (v *validator) caps(c *Capabilities) {
	const path = "capabilities.caps"
	if n := c.Caps.ActionsPerRun; n < 0 || n > maxActionsPerRun {
		v.fail(path+".actions_per_run", "must be between 1 and %d", maxActionsPerRun)
	}
	if n := c.Caps.RunsPerMinute; n < 0 || n > maxPerMinute {
		v.fail(path+".runs_per_minute", "must be between 1 and %d", maxPerMinute)
	}
	if n := c.Caps.ActionsPerMinute; n < 0 || n > maxPerMinute {
		v.fail(path+".actions_per_minute", "must be between 1 and %d", maxPerMinute)
	}
	params := strictdoc.JoinPath(path, "params")
	for _, kind := range slices.Sorted(maps.Keys(c.Caps.Params)) {
		kp := strictdoc.KeyPath(params, kind)
		if !slices.Contains(c.Actions, kind) {
			v.fail(kp, "kind %s is not declared in capabilities.actions", kind)
			continue
		}
		m := c.Caps.Params[kind]
		if len(m) == 0 {
			v.fail(kp, "must name at least one param, as {NAME: CAP}")
		}
		if len(m) > maxCappedParams {
			v.fail(kp, "at most %d params allowed, got %d", maxCappedParams, len(m))
		}
		for _, name := range slices.Sorted(maps.Keys(m)) {
			np := strictdoc.KeyPath(kp, name)
			switch {
			case !paramRE.MatchString(name):
				v.fail(np, "must name a param: [A-Za-z_][A-Za-z0-9_-]{0,63}")
			case math.IsNaN(m[name]) || math.IsInf(m[name], 0) || m[name] < 0:
				v.fail(np, "must be a finite number ≥ 0")
			}
		}
	}
}
