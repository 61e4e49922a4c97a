//go:build !linux

package process

import (
	"context"
	"fmt"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// NewPool fails off Linux with sandbox.ErrUnsupported: the pool's protocol
// client is built for Linux pipes.
func NewPool(ctx context.Context, pc PoolConfig) (sandbox.Deployment, error) {
	return nil, fmt.Errorf("deploy %s: %w: %v", pc.shape().name, sandbox.ErrUnsupported, errNotLinux)
}
