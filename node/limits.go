package node

import (
	"encoding/json"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/trigger"
)

// ceilings are the config's limits in typed form.
type ceilings struct {
	state      int64
	maxArchive int64
	archive    archive.Limits
}

func (c Config) ceilings() (ceilings, error) {
	var out ceilings
	var err error
	if out.state, err = parseBytes(c.State.Max); err != nil {
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

// mustJSON encodes a value the manifest package already proved encodable.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("node: manifest value not JSON-encodable: " + err.Error())
	}
	return b
}
