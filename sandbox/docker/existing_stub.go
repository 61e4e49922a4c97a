package docker

import (
	"context"
	"fmt"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// deployExisting refuses placement into existing containers until it is
// implemented.
func (d *Driver) deployExisting(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	return nil, fmt.Errorf("%w: placement into existing containers", sandbox.ErrUnsupported)
}
