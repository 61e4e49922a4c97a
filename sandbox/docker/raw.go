package docker

import (
	"context"
	"fmt"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
)

var _ sandbox.RawStarter = (*Driver)(nil)

// StartRaw starts one worker container of spec as Deploy would (the same
// checks, image, container and init message) but outside any deployment,
// and sends it nothing: the conformance kit speaks the protocol with it
// directly. The caller must Wait for it, which removes the container;
// Close removes it too.
func (d *Driver) StartRaw(ctx context.Context, spec sandbox.Spec) (*sandbox.RawWorker, error) {
	name := spec.Service
	if name == "" {
		name = "service"
	}
	ws, err := d.workerSpec(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("start worker of %s: %w", name, err)
	}
	cs := ws.cs
	cs.name = d.newName(name)
	cs.labels = d.labels(RoleWorker, name, spec.Version, "")
	p, err := d.startContainer(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("start worker of %s: %w", name, err)
	}
	pc := process.PoolConfig{Config: d.cfg.Process, Spec: spec, Module: ws.module}
	return process.NewRawWorker(p, process.InitMessage(pc)), nil
}
