package process

import (
	"context"
	"fmt"

	"github.com/andromeda-runner/andromeda/sandbox"
)

var _ sandbox.RawStarter = (*Driver)(nil)

// StartRaw starts one worker of spec as Deploy would (the same checks,
// dependencies, sandbox and init message) but outside any deployment, and
// sends it nothing: the conformance kit speaks the protocol with it
// directly. The worker counts against no pool and is not stopped by Close;
// the caller must Wait for it.
func (d *Driver) StartRaw(ctx context.Context, spec sandbox.Spec) (*sandbox.RawWorker, error) {
	name := spec.Service
	if name == "" {
		name = "service"
	}
	fail := func(err error) (*sandbox.RawWorker, error) {
		return nil, fmt.Errorf("start worker of %s: %w", name, err)
	}
	mode, module, tmpl, err := d.workerTemplate(ctx, spec, name, "")
	if err != nil {
		return fail(err)
	}
	pc := d.poolConfig(spec, name, mode, module, tmpl)
	if _, err := newDeployment(pc); err != nil {
		return fail(err)
	}
	p, err := pc.Start(ctx)
	if err != nil {
		return fail(err)
	}
	return NewRawWorker(p, InitMessage(pc)), nil
}
