package deps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// depsLock serialises installs per dependency directory.
var depsLock struct {
	sync.Mutex
	dirs map[string]*sync.Mutex
}

func lockDeps(dir string) func() {
	depsLock.Lock()
	if depsLock.dirs == nil {
		depsLock.dirs = map[string]*sync.Mutex{}
	}
	mu := depsLock.dirs[dir]
	if mu == nil {
		mu = &sync.Mutex{}
		depsLock.dirs[dir] = mu
	}
	depsLock.Unlock()
	mu.Lock()
	return mu.Unlock
}

// Ensure makes sure the dependencies svc declares in m.Manifest, plus the
// packages added with Add, are installed, and returns the directory to show
// the service's workers (an install's m.Subdir), or "" when it has none.
// An install is checked first, so that no service-supplied code runs at
// install (see SourceError), then runs in a jail like a worker's, in a
// network namespace of its own: with a local registry directory it has no
// network at all, else it reaches the registry's host and port, and nothing
// else, through the jail's egress proxy. pip installs wheels only
// (--only-binary=:all:) and npm runs no scripts (--ignore-scripts), so
// registry packages run no code either. An identical install is reused.
func (in *Installer) Ensure(ctx context.Context, m *Manager, tc Toolchain, svc Service) (string, error) {
	dir, err := in.dir(svc.Name, m)
	if err != nil {
		return "", fmt.Errorf("dependencies: %w", err)
	}
	unlock := lockDeps(dir)
	defer unlock()
	added, err := readAdded(dir)
	if err != nil {
		return "", fmt.Errorf("dependencies: %w", err)
	}
	cur, err := in.install(ctx, m, tc, svc, dir, added)
	if err != nil || cur == "" {
		return "", err
	}
	return filepath.Join(cur, m.Subdir), nil
}

// Add installs pkg into svc's dependency directory, on top of what the
// service declares, and records it so that later installs keep it. pkg is
// what npm install or a requirements.txt line takes ("left-pad@1.3.0",
// "requests>=2"), or the absolute path of a package file inside the local
// registry directory (for Python a wheel); anything else is a *SourceError
// unless AllowAnySource. The service's running workers keep the install
// they started with.
func (in *Installer) Add(ctx context.Context, m *Manager, tc Toolchain, svc Service, pkg string) error {
	return in.change(ctx, m, tc, svc, pkg, true)
}

// Remove removes a package added with Add and reinstalls without it; pkg
// may be the spec given to Add or the package's name. A package the
// service itself declares cannot be removed here.
func (in *Installer) Remove(ctx context.Context, m *Manager, tc Toolchain, svc Service, pkg string) error {
	return in.change(ctx, m, tc, svc, pkg, false)
}

func (in *Installer) change(ctx context.Context, m *Manager, tc Toolchain, svc Service, pkg string, add bool) error {
	dir, err := in.dir(svc.Name, m)
	if err != nil {
		return err
	}
	unlock := lockDeps(dir)
	defer unlock()
	added, err := readAdded(dir)
	if err != nil {
		return err
	}
	name := m.packageName(pkg)
	i := slices.IndexFunc(added, func(a string) bool { return a == pkg || m.packageName(a) == name })
	switch {
	case add && i >= 0:
		added[i] = pkg
	case add:
		added = append(added, pkg)
	case i >= 0:
		added = slices.Delete(added, i, i+1)
	default:
		return errors.New("not added with deps add (a package the service declares is changed by changing the service)")
	}
	if _, err := in.install(ctx, m, tc, svc, dir, added); err != nil {
		return err
	}
	raw, err := json.Marshal(added)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, depsAdded), raw)
}

// install installs what svc declares plus added into dir unless an
// identical install exists, makes it current, and returns its directory
// ("" when there is nothing to install).
func (in *Installer) install(ctx context.Context, m *Manager, tc Toolchain, svc Service, dir string, added []string) (string, error) {
	fail := func(err error) (string, error) { return "", fmt.Errorf("dependencies: %w", err) }
	registry := in.Registries[m.Language]
	j := job{registry: registry, local: filepath.IsAbs(registry), allowAny: in.AllowAnySource, argv: tc.Installer}
	localReg := ""
	if j.local {
		localReg = registry
	}
	for _, a := range added {
		if err := checkAdded(m, a, localReg, j.allowAny); err != nil {
			return fail(err)
		}
	}
	var err error
	if j.decl, err = m.tool.read(svc.Dir, added, j.allowAny); err != nil {
		return fail(err)
	}
	if len(j.decl.src) == 0 && len(added) == 0 {
		// Nothing (any more): no install is current.
		if err := os.Remove(filepath.Join(dir, depsCurrent)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
		pruneInstalls(dir, "")
		return "", nil
	}
	if len(tc.Installer) == 0 {
		return "", fmt.Errorf("dependencies: the service has %s but this node has no installer for %s (Debian: apt-get install %s)",
			m.Manifest, m.Language, m.Package)
	}
	hosts, err := m.Hosts(registry)
	if err != nil {
		return fail(err)
	}
	name := installName(m, j.decl, registry, tc, added)
	final := filepath.Join(dir, name)
	if _, err := os.Stat(filepath.Join(final, installDone)); err == nil {
		return final, setCurrent(dir, name)
	}
	if j.dir, err = newStage(dir); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(j.dir)
	j.added = added
	if j.local {
		j.added = underRegistry(registry, added)
	}
	spec, err := in.jailSpec(m, tc, svc, j)
	if err != nil {
		return fail(err)
	}
	spec.Egress = hosts
	if err := in.run(ctx, m, svc, spec, j.dir); err != nil {
		return fail(err)
	}
	if err := os.Rename(j.dir, final); err != nil {
		return fail(err)
	}
	if err := setCurrent(dir, name); err != nil {
		return "", err
	}
	pruneInstalls(dir, name)
	return final, nil
}

// installName names an install by a digest of what makes it.
func installName(m *Manager, d declared, registry string, tc Toolchain, added []string) string {
	h := sha256.New()
	for _, part := range append([]string{m.Language, string(d.src), string(d.lock), registry, tc.Version, tc.InstallerVersion}, added...) {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return "v-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// newStage creates the directory an install is built in, beside the
// installs of dir.
func newStage(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(dir, ".install-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		os.RemoveAll(stage)
		return "", err
	}
	return stage, nil
}

// underRegistry returns added with every package file inside the local
// registry directory named as the installer sees it, under localRegistry.
func underRegistry(registry string, added []string) []string {
	added = slices.Clone(added)
	for i, a := range added {
		if rel, err := filepath.Rel(registry, a); err == nil && filepath.IsAbs(a) && filepath.IsLocal(rel) {
			added[i] = localRegistry + "/" + filepath.ToSlash(rel)
		}
	}
	return added
}

// jailSpec writes the install's files into j.dir and returns the jail its
// installer runs in: the toolchain, the service (AllowAnySource only: local
// paths in the manifest are the service's), the local registry and the
// install's directory, writable.
func (in *Installer) jailSpec(m *Manager, tc Toolchain, svc Service, j job) (jail.Spec, error) {
	s := jail.Spec{
		Name:    svc.Name + "-install",
		Tools:   tc.Mounts,
		Scratch: max(in.Scratch, 256<<20),
		Limits:  jail.Limits{Memory: in.Memory, Pids: 512},
		Files:   in.Files,
		Env:     []string{"PATH=" + path.Dir(tc.Exe) + ":" + jail.Path, "HOME=" + jail.Scratch, "TMPDIR=" + jail.Scratch, "LANG=C.UTF-8"},
	}
	if j.allowAny {
		s.Binds = append(s.Binds, jail.Bind{Source: svc.Dir, Target: svcDir})
	}
	if j.local {
		s.Binds = append(s.Binds, jail.Bind{Source: j.registry, Target: localRegistry, NoExec: true})
	}
	target, cwd, argv, err := m.tool.stage(j)
	if err != nil {
		return s, err
	}
	s.Binds = append(s.Binds, jail.Bind{Source: j.dir, Target: target, Write: true, NoExec: true})
	s.Dir, s.Argv = cwd, argv
	return s, nil
}

// run runs the installer of spec, whose install directory is stage on the
// host, within Timeout, and marks the install complete.
func (in *Installer) run(ctx context.Context, m *Manager, svc Service, spec jail.Spec, stage string) error {
	// The installer runs as the jail's uid: let it write here.
	if err := in.Jail.Chown(stage); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, in.Timeout)
	defer cancel()
	start := time.Now()
	if len(spec.Argv) > 0 {
		sandbox.Progress(ctx, "installing %s dependencies (%s) with %s", m.Language, m.Manifest, path.Base(spec.Argv[0]))
	}
	out, err := in.Jail.Run(ctx, spec)
	if err != nil {
		return err
	}
	sandbox.Progress(ctx, "installed %s dependencies in %s", m.Language, time.Since(start).Round(time.Millisecond))
	in.Logger.Info("dependencies installed", "service", svc.Name, "language", m.Language, "took", time.Since(start).Round(time.Millisecond), "output", strings.TrimSpace(string(out)))
	// npm leaves no node_modules when everything declared is optional and
	// missing: the workers mount the directory anyway.
	if err := os.MkdirAll(filepath.Join(stage, m.Subdir), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(stage, installDone), nil, 0o644)
}

func setCurrent(dir, name string) error {
	if err := writeFileAtomic(filepath.Join(dir, depsCurrent), []byte(name+"\n")); err != nil {
		return fmt.Errorf("dependencies: %w", err)
	}
	return nil
}

// pruneInstalls removes every install in dir but current and the newest
// other one (which a deployment may still use); current may be "".
func pruneInstalls(dir, current string) {
	entries, _ := os.ReadDir(dir)
	type inst struct {
		name string
		mod  time.Time
	}
	var old []inst
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "v-") || e.Name() == current {
			continue
		}
		fi, err := e.Info()
		if err == nil {
			old = append(old, inst{e.Name(), fi.ModTime()})
		}
	}
	sort.Slice(old, func(i, j int) bool { return old[i].mod.After(old[j].mod) })
	for i, o := range old {
		if i > 0 {
			_ = os.RemoveAll(filepath.Join(dir, o.name))
		}
	}
}

func writeFileAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
