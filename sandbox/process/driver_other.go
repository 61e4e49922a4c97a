//go:build !linux

package process

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// errNotLinux is why the driver does nothing off Linux: its sandbox is made
// of Linux namespaces, cgroups and seccomp.
var errNotLinux = errors.New("the process driver needs Linux (namespaces, cgroups, seccomp), this is " + runtime.GOOS)

// Test fails off Linux: the driver is disabled.
func (d *Driver) Test(ctx context.Context) error {
	return fmt.Errorf("test process: %w", errNotLinux)
}

// Deploy fails off Linux with sandbox.ErrUnsupported.
func (d *Driver) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	return nil, fmt.Errorf("deploy %s: %w: %v", spec.Service, sandbox.ErrUnsupported, errNotLinux)
}

// AddDep fails off Linux with sandbox.ErrUnsupported.
func (d *Driver) AddDep(ctx context.Context, spec sandbox.Spec, pkg string) error {
	return fmt.Errorf("add dep %s to %s: %w: %v", pkg, spec.Service, sandbox.ErrUnsupported, errNotLinux)
}

// RemoveDep fails off Linux with sandbox.ErrUnsupported.
func (d *Driver) RemoveDep(ctx context.Context, spec sandbox.Spec, pkg string) error {
	return fmt.Errorf("remove dep %s from %s: %w: %v", pkg, spec.Service, sandbox.ErrUnsupported, errNotLinux)
}

// WorkersStarted returns -1 off Linux: the driver starts no worker.
func WorkersStarted(dep sandbox.Deployment) int64 { return -1 }

// RuntimeOffer fails off Linux with sandbox.ErrUnsupported.
func (d *Driver) RuntimeOffer(ctx context.Context, spec sandbox.Spec) (map[string]any, error) {
	return nil, fmt.Errorf("offer %s: %w: %v", spec.Service, sandbox.ErrUnsupported, errNotLinux)
}

// StartRaw fails off Linux with sandbox.ErrUnsupported.
func (d *Driver) StartRaw(ctx context.Context, spec sandbox.Spec) (*sandbox.RawWorker, error) {
	return nil, fmt.Errorf("start worker of %s: %w: %v", spec.Service, sandbox.ErrUnsupported, errNotLinux)
}
