package node

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// A service reaches its driver as a sandbox.Spec and the scheduler as
// trigger.Specs: the translation from the manifest and the admitted
// decision is here, in one place, so drivers never see a manifest.

// specFor translates an admitted service into what a driver deploys.
func (n *Node) specFor(rec store.Service, m *manifest.Service, dir string) sandbox.Spec {
	log := n.log.With(logService, rec.Name)
	spec := sandbox.Spec{
		Service: rec.Name, Version: rec.Version, Digest: rec.Digest, Dir: dir,
		Entry: m.Runtime.Entry, Language: m.Runtime.Language, Mode: sandbox.Mode(m.Mode),
		Limits:  limitsOf(rec.Decision.Limits),
		Network: networkOf(m),
		Volumes: n.volumeSpecs(rec.Name, m),
		Log:     n.logSink(rec.Name, rec.Version, rec.Owner, "", log), // the logs stream, not the node's log
	}
	containerSpec(&spec, rec.Decision, m)
	return spec
}

// containerSpec fills what the docker driver reads: the image and command
// of an image service, and the existing container the decision placed it
// into with what to do when that one is not running. A process service
// whose decision picked docker keeps Language, Dir and Entry and no image:
// the driver runs it in the runtime image configured for its language.
func containerSpec(spec *sandbox.Spec, d decision.Decision, m *manifest.Service) {
	if d.Driver != string(manifest.DriverDocker) {
		return
	}
	spec.Image = m.Runtime.Image
	if m.Runtime.Image != "" {
		spec.Command = slices.Clone(m.Runtime.Command)
	}
	spec.Container = d.Container
	if d.Container != "" {
		spec.Fallback = d.Fallback
		if spec.Fallback == "" {
			spec.Fallback = sandbox.FallbackNew // a decision from before container_fallback
		}
	}
}

// limitsOf is the admitted limits as a driver enforces them.
func limitsOf(lim decision.Limits) sandbox.Limits {
	return sandbox.Limits{
		Memory: lim.Memory, CPU: lim.CPU, Timeout: time.Duration(lim.TimeoutMS) * time.Millisecond,
		Pids: lim.Pids, Concurrency: lim.Concurrency,
	}
}

func networkOf(m *manifest.Service) sandbox.Network {
	nw := m.Capabilities.Network
	return sandbox.Network{Any: nw.Any, Hosts: nw.Hosts}
}

// triggerSpecs converts the manifest's triggers, keeping their indexes, and
// reports the manual trigger if there is one.
func triggerSpecs(m *manifest.Service) (specs []trigger.Spec, manual bool, manualName string) {
	for i, t := range m.Triggers {
		sp := trigger.Spec{Kind: string(t.Kind), Every: t.Every.Std(), Schedule: t.Schedule, Topic: t.Topic, Path: t.Path}
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

// mustJSON encodes a value the manifest package already proved encodable.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("node: manifest value not JSON-encodable: " + err.Error())
	}
	return b
}
