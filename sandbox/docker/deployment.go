package docker

import (
	"context"
	"fmt"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// deployment is one service deployed in containers.
type deployment struct {
	sandbox.Deployment
}

func (dep *deployment) Stop(ctx context.Context) error { return nil }

// Deploy is a placeholder until the pool lands.
func (d *Driver) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	if spec.Container != "" {
		return d.deployExisting(ctx, spec)
	}
	return nil, fmt.Errorf("deploy %s: %w: not yet", spec.Service, sandbox.ErrUnsupported)
}
