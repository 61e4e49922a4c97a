// Package policy turns a submitted service into a Decision: run it here
// (with which driver, limits and network), forward it, or reject it, always
// with the reasons, in the order the rules looked at the service. Admit is a
// pure function of the manifest and what the node can do: it never runs
// service code and does no I/O.
//
// This first version carries the rules every node needs (a driver that is
// available, a network the driver can enforce, resource ceilings); the
// operator's full policy (trusted hubs, sources, keywords, rewards, custom
// rules) builds on the same Decision.
package policy

import (
	"fmt"
	"time"

	"github.com/andromeda-runner/andromeda/manifest"
)

// Verdict is what the node does with a service.
type Verdict string

// The verdicts.
const (
	Run     Verdict = "run"     // run it here
	Forward Verdict = "forward" // send it to a peer
	Reject  Verdict = "reject"  // refuse it
)

// Decision is the outcome of admission.
type Decision struct {
	Verdict Verdict  `json:"verdict"`
	Driver  string   `json:"driver"`
	Limits  Limits   `json:"limits"`
	Network string   `json:"network"`
	Reasons []Reason `json:"reasons"`
}

// Reason is one rule's finding about a service.
type Reason struct {
	Rule   string `json:"rule"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Limits are the resource ceilings a deployment runs under.
type Limits struct {
	Memory      int64   `json:"memory_bytes"`
	CPU         float64 `json:"cpu"`
	TimeoutMS   int64   `json:"timeout_ms"`
	Pids        int     `json:"pids"`
	Concurrency int     `json:"concurrency"`
}

// Node is what admission needs to know about the node.
type Node struct {
	// Drivers maps each driver name to whether it is enabled here, and why
	// not when it is not.
	Drivers map[string]DriverInfo
	// Ceilings are the most any service may get; requests above are
	// clamped.
	Ceilings Limits
}

// DriverInfo says whether a driver can take services on this node.
type DriverInfo struct {
	Enabled bool
	Reason  string // why not, when disabled
	// Network reports whether the driver can grant (and enforce) network
	// access; a driver that cannot only takes services with network none.
	Network bool
}

// Admit decides what to do with a validated, normalised manifest. Every rule
// appends a reason whether it passed or not; the verdict is Reject when any
// rule failed.
func Admit(m *manifest.Service, node Node) Decision {
	d := Decision{Verdict: Run, Driver: string(m.Runtime.Driver)}
	add := func(rule string, ok bool, format string, args ...any) {
		d.Reasons = append(d.Reasons, Reason{Rule: rule, OK: ok, Detail: fmt.Sprintf(format, args...)})
		if !ok {
			d.Verdict = Reject
		}
	}

	drv, known := node.Drivers[d.Driver]
	switch {
	case !known:
		add("driver", false, "driver %s is not built into this node", d.Driver)
	case !drv.Enabled:
		add("driver", false, "driver %s is disabled on this node: %s", d.Driver, drv.Reason)
	default:
		add("driver", true, "driver %s is available", d.Driver)
	}

	d.Network = m.Capabilities.Network.String()
	switch {
	case m.Capabilities.Network.None():
		add("network", true, "no network requested")
	case known && !drv.Network:
		add("network", false, "network %s requested, but driver %s cannot grant network access", d.Network, d.Driver)
	default:
		add("network", true, "network %s granted", d.Network)
	}

	c := node.Ceilings
	d.Limits.Memory = clamp(add, "limits.memory", m.Resources.Memory.Int64(), c.Memory, bytesString)
	d.Limits.CPU = clamp(add, "limits.cpu", m.Resources.CPU.Cores(), c.CPU, func(v float64) string { return fmt.Sprintf("%g", v) })
	d.Limits.TimeoutMS = clamp(add, "limits.timeout", m.Resources.Timeout.Std().Milliseconds(), c.TimeoutMS, func(v int64) string { return (time.Duration(v) * time.Millisecond).String() })
	d.Limits.Pids = clamp(add, "limits.pids", m.Resources.Pids, c.Pids, func(v int) string { return fmt.Sprint(v) })
	d.Limits.Concurrency = clamp(add, "limits.concurrency", m.Resources.Concurrency, c.Concurrency, func(v int) string { return fmt.Sprint(v) })
	return d
}

// clamp returns the requested value, or the ceiling when the request is
// above it (a ceiling ≤ 0 means none), and records why.
func clamp[T int | int64 | float64](add func(string, bool, string, ...any), rule string, req, ceiling T, show func(T) string) T {
	if ceiling > 0 && req > ceiling {
		add(rule, true, "requested %s, clamped to the node's ceiling %s", show(req), show(ceiling))
		return ceiling
	}
	add(rule, true, "%s (ceiling %s)", show(req), show(ceiling))
	return req
}

func bytesString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGi", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKi", n>>10)
	}
	return fmt.Sprintf("%d", n)
}
