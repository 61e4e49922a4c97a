package policy

import (
	"maps"
	"slices"
	"strconv"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/manifest"
)

// Growth is one way a new version of a service asks for more than the
// admitted one (decision.Growth).
type Growth = decision.Growth

// isolation ranks drivers from the strongest isolation (0) to the weakest.
var isolation = map[manifest.Driver]int{manifest.DriverWasm: 0, manifest.DriverDocker: 1, manifest.DriverProcess: 2}

// Diff lists exactly what new asks for beyond old, in a fixed order:
// memory, cpu, timeout, pids, concurrency, network, actions, caps
// (actions per run, then param caps by kind and name), target, state,
// driver, http triggers, volumes (added or larger). Both manifests must be normalized. Nothing that
// shrank or stayed is listed; nil means nothing grew.
func Diff(old, new *manifest.Service) []Growth {
	var g []Growth
	add := func(what, from, to string) { g = append(g, Growth{What: what, From: from, To: to}) }
	o, n := old.Resources, new.Resources
	if n.Memory.Int64() > o.Memory.Int64() {
		add("memory", o.Memory.String(), n.Memory.String())
	}
	if n.CPU.Cores() > o.CPU.Cores() {
		add("cpu", o.CPU.String(), n.CPU.String())
	}
	if n.Timeout.Std() > o.Timeout.Std() {
		add("timeout", o.Timeout.String(), n.Timeout.String())
	}
	if n.Pids > o.Pids {
		add("pids", strconv.Itoa(o.Pids), strconv.Itoa(n.Pids))
	}
	if n.Concurrency > o.Concurrency {
		add("concurrency", strconv.Itoa(o.Concurrency), strconv.Itoa(n.Concurrency))
	}

	on, nn := old.Capabilities.Network, new.Capabilities.Network
	switch {
	case on.Any:
	case nn.Any:
		add("network", on.String(), "any")
	default:
		for _, h := range nn.Hosts {
			if !slices.Contains(on.Hosts, h) {
				add("network", "", h)
			}
		}
	}
	for _, a := range new.Capabilities.Actions {
		if !slices.Contains(old.Capabilities.Actions, a) {
			add("action", "", a)
		}
	}
	g = append(g, capsGrowth(old.Capabilities, new.Capabilities)...)
	if new.Target != "" && new.Target != old.Target {
		add("target", old.Target, new.Target)
	}
	if new.Capabilities.State && !old.Capabilities.State {
		add("state", "", "granted")
	}
	if isolation[new.Runtime.Driver] > isolation[old.Runtime.Driver] {
		add("driver", string(old.Runtime.Driver), string(new.Runtime.Driver))
	}
	oldPaths := map[string]bool{}
	for _, t := range old.Triggers {
		if t.Kind == manifest.KindHTTP {
			oldPaths[t.Path] = true
		}
	}
	for _, t := range new.Triggers {
		if t.Kind == manifest.KindHTTP && !oldPaths[t.Path] {
			add("trigger", "", "http "+t.Path)
		}
	}
	return append(g, volumesGrowth(old, new)...)
}

// capsGrowth lists the caps new loosens: more actions per run (unset is
// the contract's 256), more or unlimited runs or actions per minute, and
// a param cap raised or dropped on a kind both
// versions declare.
func capsGrowth(old, new manifest.Capabilities) []Growth {
	var g []Growth
	perRun := func(c manifest.Capabilities) int {
		if c.Caps.ActionsPerRun > 0 {
			return c.Caps.ActionsPerRun
		}
		return contract.MaxActions
	}
	if o, n := perRun(old), perRun(new); n > o {
		g = append(g, Growth{What: "actions_per_run", From: strconv.Itoa(o), To: strconv.Itoa(n)})
	}
	perMinute := func(what string, o, n int) {
		switch {
		case o == 0:
		case n == 0:
			g = append(g, Growth{What: what, From: strconv.Itoa(o), To: "none"})
		case n > o:
			g = append(g, Growth{What: what, From: strconv.Itoa(o), To: strconv.Itoa(n)})
		}
	}
	perMinute("runs_per_minute", old.Caps.RunsPerMinute, new.Caps.RunsPerMinute)
	perMinute("actions_per_minute", old.Caps.ActionsPerMinute, new.Caps.ActionsPerMinute)
	for _, kind := range slices.Sorted(maps.Keys(old.Caps.Params)) {
		if !slices.Contains(new.Actions, kind) {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(old.Caps.Params[kind])) {
			o := old.Caps.Params[kind][name]
			n, capped := new.Caps.Params[kind][name]
			switch {
			case !capped:
				g = append(g, Growth{What: "cap", From: kind + "." + name + " ≤ " + number(o), To: kind + "." + name + " uncapped"})
			case n > o:
				g = append(g, Growth{What: "cap", From: kind + "." + name + " ≤ " + number(o), To: kind + "." + name + " ≤ " + number(n)})
			}
		}
	}
	return g
}

func number(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// growthSummary joins growths for a reason: "memory 64Mi → 128Mi, action submit".
func growthSummary(gs []Growth) string {
	s := ""
	for i, g := range gs {
		if i > 0 {
			s += ", "
		}
		s += g.String()
	}
	return s
}

// growthNames lists what grew for rules: ["memory", "network", …], each
// once, in Diff's order.
func growthNames(gs []Growth) []string {
	names := []string{}
	for _, g := range gs {
		if !slices.Contains(names, g.What) {
			names = append(names, g.What)
		}
	}
	return names
}
