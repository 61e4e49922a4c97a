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

// Placement into existing containers.
//
// The policy's containers list names containers of the operator's that
// docker services may run in; the decision puts a service into one
// (Spec.Container) and Deploy calls deployExisting. When the container
// runs, the service's workers run in it through exec sessions, as
// process.NewPool runs any worker (a warm pool in server mode, a fresh
// exec per invocation in command mode), over the exec's attached and
// demultiplexed standard streams:
//
//   - Files: the service's files are copied (the engine's archive API) to
//     ServicesDir/<service>-<first 12 hex digits of its digest>/service,
//     owned by root and readable by all, the language's shim to runtime/
//     beside it, and home/ (the worker's HOME and TMPDIR) is the only
//     directory the service may write, owned by its uid, mode 0700. The
//     worker's command line is the process driver's (lang.Argv) with the
//     shim's path there; its working directory is service/. The missing
//     directories of ServicesDir are made on the first placement into a
//     container and removed with the last.
//   - Uid: each service (and digest) runs as a uid:gid of its own,
//     FirstServiceUID plus a hash modulo ServiceUIDs, or the next one no
//     process of the container runs as; the exec sessions have no
//     capabilities. The container's environment, which an exec inherits,
//     reaches the worker with every value emptied; PATH is the
//     container's, HOME, TMPDIR and LANG the driver's.
//   - Process limit: RLIMIT_NPROC (and RLIMIT_NOFILE, Config.Process.Files)
//     of every worker is set from the host with prlimit(2) on the exec's
//     host PID before the service's own code runs: a node or python shim
//     loads the service only on the init message, which the pool sends
//     after the start returned; an exec service's command is held by
//     /bin/sh reading one line of its standard input, which the driver
//     sends once the limits are set, and then executes it in the same
//     process (an exec service needs /bin/sh in the container). The limit
//     is Limits.Pids (default Config.Process.Pids) times the pool's size
//     (Limits.Concurrency): it counts the tasks of the service's uid, all
//     its workers together. Root without CAP_SYS_RESOURCE sets it from a
//     thread of its own that takes the worker's uid and gid for the call
//     and ends with it.
//   - Kill: killing a worker (a deadline, a cancel past its grace, Stop)
//     stops its process, kills what it started (the processes below it and
//     those of its session as the service's uid) and then it, with
//     SIGKILL through a pidfd, so a reused PID is never signalled. When a
//     worker ends by itself, what it started is killed as well, as in the
//     process driver's PID namespace.
//   - Memory and CPU are the container's, as the Placement's reason says,
//     and so are its network (Spec.Network is not applied) and its mounts
//     (Spec.Volumes is refused). The service sees the container's file
//     system as any unprivileged user of it does. CPU time and peak memory
//     are the worker process's own, read from /proc; OOM kills are not
//     told apart from the container's.
//   - Stop stops the pool, kills every process of the service's uid left
//     in the container, removes its directory (from the host, through the
//     container's root, following no symbolic link) and, with the last
//     service placed there, the directories the first one made, giving
//     their parent back its times: the container's diff is what it was
//     before. A zombie, dead but not reaped, stays until the container's
//     init reaps it (an init that reaps nothing, such as sleep, keeps it).
//
// The engine's API cannot signal one exec's process, set its limits or
// delete a file, so the driver does that through the host's /proc: the
// engine must be on the node's host (a container's process must be one of
// the host's, which Deploy checks) and the node root. A container that is
// missing or not running (created, exited, paused, restarting) fails the
// deploy with ErrNotRunning when Spec.Fallback is refuse, and otherwise
// deploys the service as new containers with Placement Kind fallback and
// the reason; so does an image service, which has no place in another
// image's container. A container with a read-only root file system, or a
// mount on ServicesDir's path (its files would land in the operator's
// volume or host directory, outside the container), is refused, as are
// services with dependencies to install. A container that stops while a
// service is placed in it leaves the pool unhealthy; its directory is
// removed when the same version is placed there again.

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
	refused := ErrNotRunning
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
		refused = sandbox.ErrUnsupported
	}
	if why != "" {
		return d.fallback(ctx, spec, why, refused)
	}
	return d.placeInto(ctx, cli, spec, in.Container)
}

// fallback deploys spec as new containers because of why, when the policy
// allows it; else the error wraps refused.
func (d *Driver) fallback(ctx context.Context, spec sandbox.Spec, why string, refused error) (sandbox.Deployment, error) {
	if spec.Fallback == sandbox.FallbackRefuse {
		return nil, fmt.Errorf("deploy %s: %w: %s, and the policy's fallback is refuse", spec.Service, refused, why)
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
