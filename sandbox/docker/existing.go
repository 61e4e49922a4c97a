package docker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// Placement into existing containers: the policy's containers list names
// containers of the operator's that docker services may run in, and the
// decision puts a service into one (Spec.Container). Its workers then run
// there through exec sessions, in a directory of its own, as a uid of its
// own, under a process limit; memory and CPU are the container's. See
// deployExisting.

// ServicesDir is the directory of an existing container under which each
// service placed there gets a directory of its own
// (ServicesDir/<service>-<digest>), with the service's files at service/,
// the language's shim at runtime/ and its scratch (HOME, TMPDIR) at home/.
const ServicesDir = "/var/lib/andromeda/services"

// The uids of placed services: FirstServiceUID plus a hash of the service
// and its digest modulo ServiceUIDs, or the next one free in the container.
// They stay below 65536, the range an engine that remaps users maps.
const (
	FirstServiceUID = 20000
	ServiceUIDs     = 40000
)

// ErrNotRunning is the reason a placement into an existing container fails
// when the container is missing or not running and the policy's fallback
// is refuse.
var ErrNotRunning = errors.New("container not running")

// deployExisting deploys spec into the running container spec.Container,
// or, when it is missing or not running, as new containers (Placement Kind
// fallback) unless spec.Fallback is refuse. The platform part is in
// existing_linux.go.
func (d *Driver) deployExisting(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	switch spec.Fallback {
	case "", sandbox.FallbackNew, sandbox.FallbackRefuse:
	default:
		return nil, fmt.Errorf("deploy %s: fallback %q: must be %q or %q (empty means %q)", spec.Service, spec.Fallback, sandbox.FallbackNew, sandbox.FallbackRefuse, sandbox.FallbackNew)
	}
	cli, err := d.ready()
	if err != nil {
		return nil, err
	}
	name := spec.Container
	in, err := cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	var why string
	switch {
	case cerrdefs.IsNotFound(err):
		why = fmt.Sprintf("container %s does not exist", name)
	case err != nil:
		return nil, fmt.Errorf("deploy %s: inspect container %s: %w", spec.Service, name, err)
	case in.Container.State == nil || !in.Container.State.Running:
		status := "unknown state"
		if s := in.Container.State; s != nil {
			status = string(s.Status)
			if s.Paused {
				status = "paused"
			}
		}
		why = fmt.Sprintf("container %s is not running (%s)", name, status)
	case in.Container.State.Paused:
		why = fmt.Sprintf("container %s is not running (paused)", name)
	case spec.Image != "":
		why = fmt.Sprintf("service %s is an image service, which cannot run in the existing container %s", spec.Service, name)
	}
	if why != "" {
		return d.fallback(ctx, spec, why)
	}
	return d.placeInto(ctx, cli, spec, in.Container)
}

// fallback deploys spec as new containers because of why, when the policy
// allows it.
func (d *Driver) fallback(ctx context.Context, spec sandbox.Spec, why string) (sandbox.Deployment, error) {
	if spec.Fallback == sandbox.FallbackRefuse {
		return nil, fmt.Errorf("deploy %s: %w: %s, and the policy's fallback is refuse", spec.Service, ErrNotRunning, why)
	}
	s := spec
	s.Container = ""
	dep, err := d.Deploy(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("%s; deploy %s in a new container: %w", why, spec.Service, err)
	}
	pl := sandbox.Placement{Kind: sandbox.PlacementFallback, Reason: why + "; running in a new container"}
	if p, ok := dep.(sandbox.Placed); ok {
		inner := p.Placement()
		pl.Containers, pl.Image = inner.Containers, inner.Image
	}
	d.cfg.Logger.Warn("docker driver: placement falls back to a new container", "service", spec.Service, "container", spec.Container, "reason", why)
	return &fallbackDeployment{Deployment: dep, placement: pl}, nil
}

// fallbackDeployment is a deployment in new containers that was placed
// into an existing container which was not running.
type fallbackDeployment struct {
	sandbox.Deployment
	placement sandbox.Placement
}

// Placement says Kind fallback and why, with the new containers.
func (f *fallbackDeployment) Placement() sandbox.Placement {
	pl := f.placement
	if p, ok := f.Deployment.(sandbox.Placed); ok {
		inner := p.Placement()
		pl.Containers, pl.Image = inner.Containers, inner.Image
	}
	return pl
}

// Test runs the service's self-test in the new containers.
func (f *fallbackDeployment) Test(ctx context.Context) (bool, error) {
	if t, ok := f.Deployment.(sandbox.Tester); ok {
		return t.Test(ctx)
	}
	return false, nil
}

// Health is the new containers' pool's health.
func (f *fallbackDeployment) Health() (bool, string) {
	if h, ok := f.Deployment.(sandbox.HealthReporter); ok {
		return h.Health()
	}
	return true, ""
}

// WorkersStarted counts the workers the deployment started.
func (f *fallbackDeployment) WorkersStarted() int {
	if w, ok := f.Deployment.(interface{ WorkersStarted() int }); ok {
		return w.WorkersStarted()
	}
	return 0
}

// serviceUID is the first uid tried for a service at digest.
func serviceUID(service, digest string) int {
	h := fnv.New32a()
	h.Write([]byte(service))
	h.Write([]byte{0})
	h.Write([]byte(digest))
	return FirstServiceUID + int(h.Sum32()%ServiceUIDs)
}

// serviceDirName is the name of the directory under ServicesDir of a
// service at digest: its name made safe, and the digest's first 12 hex
// digits.
func serviceDirName(service, digest string) string {
	s := badName.ReplaceAllString(strings.ToLower(service), "-")
	if len(s) > 40 {
		s = s[:40]
	}
	s = strings.Trim(s, "-.")
	if s == "" {
		s = "service"
	}
	short := strings.TrimPrefix(digest, "sha256:")
	if len(short) > 12 {
		short = short[:12]
	}
	if short == "" || strings.ContainsAny(short, "/.") {
		short = "nodigest"
	}
	return s + "-" + short
}
