package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/api/types/mount"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

// Deploy checks the service, resolves its image and starts its containers
// through the process driver's pool (process.NewPool):
// Limits.Concurrency (default Config.Process.Concurrency) warm containers
// in server mode; in command mode one container to check that the service
// starts, then one per invocation. Every container must answer ready
// within Config.Process.StartTimeout.
//
// An image service (spec.Image set) runs the image, resolved as
// resolveImage says (a missing image, an unpinned reference that is not
// on the engine, a registry the configuration does not list: an error
// wrapping ErrImage that names the image and why), with spec.Command as
// its argv, else the image's own entrypoint and command. An archive
// service (spec.Language node, python or exec) runs in
// Config.Images[language] with spec.Dir at /service and the language's
// shim at /runtime, read-only. spec.Volumes are bind-mounted read-write at
// their paths, their directories given to Config.User when the node is
// root (volumeMounts); a volume at, inside or above a path the driver
// mounts itself (the relay's, /tmp, /service, /runtime) is refused. spec.Network none is a container without network, any the
// engine's default bridge; a host list is sandbox.ErrUnsupported, as are an
// unknown mode or language, a language without a runtime image, and an
// archive service with dependencies to install. spec.Container places the
// service into an existing container instead (deployExisting).
//
// Nothing is left behind when Deploy fails. The caller owns the
// deployment and must Stop it, which removes its containers; Close stops
// the ones still running. The deployment implements sandbox.Placed,
// sandbox.Tester and sandbox.HealthReporter.
func (d *Driver) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	if spec.Container != "" {
		return d.deployExisting(ctx, spec)
	}
	name := spec.Service
	if name == "" {
		name = "service"
	}
	fail := func(err error) (sandbox.Deployment, error) { return nil, fmt.Errorf("deploy %s: %w", name, err) }
	ws, err := d.workerSpec(ctx, spec)
	if err != nil {
		return fail(err)
	}
	dep := &deployment{d: d, name: name, spec: spec, ws: ws, live: map[string]*containerProc{}}
	if err := d.track(dep); err != nil {
		return fail(err)
	}
	pool, err := process.NewPool(ctx, dep.poolConfig())
	if err != nil {
		_ = dep.removeAll(context.Background())
		d.untrack(dep)
		return nil, err // NewPool's error names the deploy and the service
	}
	dep.mu.Lock()
	dep.pool = pool
	dep.mu.Unlock()
	if dep.stopping.Load() {
		// Close ran while the pool started.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = pool.Stop(ctx)
		_ = dep.removeAll(context.Background())
		return fail(errClosed)
	}
	return dep, nil
}

// workerSpec is what every worker of a spec is started from.
type workerSpec struct {
	mode   sandbox.Mode
	cs     containerSpec // without name and labels
	module worker.Module
	image  image
	reason string // Placement's reason
}

// workerSpec checks spec and resolves what its workers run.
func (d *Driver) workerSpec(ctx context.Context, spec sandbox.Spec) (workerSpec, error) {
	var ws workerSpec
	if _, err := d.ready(); err != nil {
		return ws, err
	}
	ws.mode = spec.Mode
	if ws.mode == "" {
		ws.mode = sandbox.ModeServer
	}
	if ws.mode != sandbox.ModeServer && ws.mode != sandbox.ModeCommand {
		return ws, fmt.Errorf("%w: mode %q (server or command)", sandbox.ErrUnsupported, spec.Mode)
	}
	if !spec.Network.Any && len(spec.Network.Hosts) > 0 {
		return ws, fmt.Errorf("%w: network: a host list (%s): the docker driver grants no network or any network, not a list of hosts", sandbox.ErrUnsupported, strings.Join(spec.Network.Hosts, ", "))
	}
	ws.cs.network = spec.Network.Any
	ws.cs.limits = d.limits(spec.Limits)
	ws.module = worker.Module{ID: "main"}
	mounts, err := d.volumeMounts(spec.Volumes)
	if err != nil {
		return ws, err
	}
	ws.cs.mounts = append(ws.cs.mounts, mounts...)
	if spec.Image != "" {
		img, err := d.resolveImage(ctx, spec.Image)
		if err != nil {
			return ws, err
		}
		if len(spec.Command) == 0 && len(img.argv) == 0 {
			return ws, fmt.Errorf("%w: image %s has no entrypoint or command, and the spec names no command", ErrImage, spec.Image)
		}
		ws.image = img
		ws.cs.image = img.id
		ws.cs.entrypoint = spec.Command // empty: the image's
		ws.cs.imageArgv = img.argv
		ws.reason = fmt.Sprintf("new containers of image %s (%s)", spec.Image, img.id)
		return ws, nil
	}
	l := lang.Lookup(spec.Language)
	if l == nil || l.Exe != "" {
		return ws, fmt.Errorf("%w: language %q: the docker driver runs an image (spec image) or an archive of %s", sandbox.ErrUnsupported, spec.Language, lang.Names())
	}
	ref := d.cfg.Images[l.Name]
	if ref == "" {
		return ws, fmt.Errorf("%w: language %s: the configuration names no runtime image for it (images)", sandbox.ErrUnsupported, l.Name)
	}
	entry, err := l.CheckEntry(spec.Dir, spec.Entry)
	if err != nil {
		return ws, err
	}
	if err := checkNoDeps(l, spec.Dir); err != nil {
		return ws, err
	}
	img, err := d.resolveImage(ctx, ref)
	if err != nil {
		return ws, fmt.Errorf("runtime image of %s: %w", l.Name, err)
	}
	ws.image = img
	ws.cs.image = img.id
	ws.cs.workDir = lang.ServiceDir
	ws.module.Entry = entry
	ws.cs.mounts = append(ws.cs.mounts, mount.Mount{Type: mount.TypeBind, Source: spec.Dir, Target: lang.ServiceDir, ReadOnly: true})
	if l.Shim != nil {
		dir, err := l.WriteShim(d.cfg.Process.WorkDir)
		if err != nil {
			return ws, err
		}
		ws.cs.mounts = append(ws.cs.mounts, mount.Mount{Type: mount.TypeBind, Source: dir, Target: lang.RuntimeDir, ReadOnly: true})
	}
	ws.cs.entrypoint = l.Argv(interpreters[l.Name], entry)
	ws.reason = fmt.Sprintf("new containers of the %s runtime image %s (%s)", l.Name, ref, img.id)
	return ws, nil
}

// interpreters are the interpreters of the archive languages, looked up on
// the runtime image's PATH.
var interpreters = map[string]string{lang.Node: "node", lang.Python: "python3"}

// checkNoDeps refuses an archive service with dependencies to install:
// the docker driver does not install them (yet).
func checkNoDeps(l *lang.Language, dir string) error {
	switch l.Name {
	case lang.Node:
		b, err := os.ReadFile(filepath.Join(dir, "package.json"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("package.json: %w", err)
		}
		var pkg struct {
			Dependencies map[string]any `json:"dependencies"`
		}
		if err := json.Unmarshal(b, &pkg); err != nil {
			return fmt.Errorf("package.json: %w", err)
		}
		if len(pkg.Dependencies) > 0 {
			return fmt.Errorf("%w: package.json has dependencies: the docker driver does not install dependencies; use an image service with them installed, or the process driver", sandbox.ErrUnsupported)
		}
	case lang.Python:
		b, err := os.ReadFile(filepath.Join(dir, "requirements.txt"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("requirements.txt: %w", err)
		}
		for line := range strings.Lines(string(b)) {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				return fmt.Errorf("%w: requirements.txt names dependencies: the docker driver does not install dependencies; use an image service with them installed, or the process driver", sandbox.ErrUnsupported)
			}
		}
	}
	return nil
}
