//go:build !linux

package docker

import (
	"context"
	"fmt"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// placeInto refuses: placement into existing containers signals and
// limits the service's processes through the host's /proc, which only
// Linux has.
func (d *Driver) placeInto(ctx context.Context, cli *client.Client, spec sandbox.Spec, in container.InspectResponse) (sandbox.Deployment, error) {
	return nil, fmt.Errorf("deploy %s into container %s: %w: placement into existing containers needs a Linux host", spec.Service, spec.Container, sandbox.ErrUnsupported)
}

// closePlaced has nothing to stop: nothing is placed on this platform.
func (d *Driver) closePlaced() error { return nil }
