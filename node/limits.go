package node

import (
	"sort"
	"time"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/trigger"
)

// ceilings are the config's limits in typed form.
type ceilings struct {
	policy     policy.Limits
	state      int64
	maxArchive int64
	archive    archive.Limits
}

func (c Config) ceilings() (ceilings, error) {
	var out ceilings
	mem, err := parseBytes(c.Limits.Memory)
	if err != nil {
		return out, err
	}
	timeout, err := time.ParseDuration(c.Limits.Timeout)
	if err != nil {
		return out, err
	}
	out.policy = policy.Limits{Memory: mem, CPU: c.Limits.CPU, TimeoutMS: timeout.Milliseconds(), Pids: c.Limits.Pids, Concurrency: c.Limits.Concurrency}
	if out.state, err = parseBytes(c.Limits.State); err != nil {
		return out, err
	}
	if out.maxArchive, err = parseBytes(c.Upload.MaxArchive); err != nil {
		return out, err
	}
	unpacked, err := parseBytes(c.Upload.MaxUnpacked)
	if err != nil {
		return out, err
	}
	out.archive = archive.DefaultLimits()
	out.archive.MaxCompressed = out.maxArchive
	out.archive.MaxSize = unpacked
	out.archive.MaxFileSize = min(out.archive.MaxFileSize, unpacked)
	out.archive.MaxEntries = c.Upload.MaxFiles
	return out, nil
}

// policyView is what admission sees of this node.
func (n *Node) policyView() policy.Node {
	v := policy.Node{Drivers: map[string]policy.DriverInfo{}, Ceilings: n.limits.policy}
	for name, d := range n.drivers {
		v.Drivers[name] = policy.DriverInfo{Enabled: d.enabled, Reason: d.reason, Network: d.driver.Offer().Isolation["network-grant"]}
	}
	return v
}

func networkOf(m *manifest.Service) sandbox.Network {
	nw := m.Capabilities.Network
	return sandbox.Network{Any: nw.Any, Hosts: nw.Hosts}
}

// triggerSpecs converts the manifest's triggers, keeping their indexes, and
// reports the manual trigger if there is one.
func triggerSpecs(m *manifest.Service) (specs []trigger.Spec, manual bool, manualName string) {
	for i, t := range m.Triggers {
		sp := trigger.Spec{Kind: string(t.Kind), Every: t.Every.Std(), Schedule: t.Schedule}
		if t.Input != nil {
			sp.Message = mustJSON(t.Input)
		}
		specs = append(specs, sp)
		if t.Kind == manifest.KindManual {
			manual, manualName = true, trigger.Name(i)
		}
	}
	return specs, manual, manualName
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
