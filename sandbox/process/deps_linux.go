package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// Where an install sees its dependency directory and a local registry.
const (
	installNode   = "/deps/node"
	installPython = pythonDeps
	localRegistry = "/registry"
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

// ensureDeps makes sure spec's dependencies are installed and returns the
// directory to show the workers (node_modules, or the Python target dir),
// or "" when the service has none.
func (d *Driver) ensureDeps(ctx context.Context, spec sandbox.Spec, tc *toolchain) (string, error) {
	if spec.Language != LangNode && spec.Language != LangPython {
		return "", nil
	}
	dir, err := d.depsDir(spec.Service, spec.Language)
	if err != nil {
		return "", fmt.Errorf("dependencies: %w", err)
	}
	unlock := lockDeps(dir)
	defer unlock()
	added, err := readAdded(dir)
	if err != nil {
		return "", fmt.Errorf("dependencies: %w", err)
	}
	cur, err := d.install(ctx, spec, tc, dir, added)
	if err != nil || cur == "" {
		return "", err
	}
	if spec.Language == LangNode {
		return filepath.Join(cur, nodeSubdir), nil
	}
	return filepath.Join(cur, pySubdir), nil
}

// AddDep installs pkg into spec's dependency directory, on top of what the
// service declares, and records it so that later deploys keep it (andromeda
// deps add NAME PKG). pkg is what npm install or a requirements.txt line
// takes: "left-pad@1.3.0", "requests>=2", or the absolute path of a
// package file inside the language's local registry directory (for Python
// a wheel); anything else (a path elsewhere, a URL, a git spec) is a
// *DepSourceError unless Config.AllowAnyDepSource. The install runs in a
// sandbox like a worker's; the service's running workers keep the
// install they started with, and its next deploy uses the new one. Safe for
// concurrent use.
func (d *Driver) AddDep(ctx context.Context, spec sandbox.Spec, pkg string) error {
	return d.changeDeps(ctx, spec, pkg, true)
}

// RemoveDep removes a package added with AddDep and reinstalls without it
// (andromeda deps rm NAME PKG); pkg may be the spec given to AddDep or the
// package's name. A package the service itself declares cannot be removed
// here. Safe for concurrent use.
func (d *Driver) RemoveDep(ctx context.Context, spec sandbox.Spec, pkg string) error {
	return d.changeDeps(ctx, spec, pkg, false)
}

func (d *Driver) changeDeps(ctx context.Context, spec sandbox.Spec, pkg string, add bool) error {
	op := "remove dep"
	if add {
		op = "add dep"
	}
	fail := func(err error) error { return fmt.Errorf("%s %s to %s: %w", op, pkg, spec.Service, err) }
	if err := d.ready(); err != nil {
		return fail(err)
	}
	if err := checkPackageSpec(pkg); err != nil {
		return fail(err)
	}
	tc, err := d.toolchain(ctx, spec.Language)
	if err != nil {
		return fail(err)
	}
	dir, err := d.depsDir(spec.Service, spec.Language)
	if err != nil {
		return fail(err)
	}
	unlock := lockDeps(dir)
	defer unlock()
	added, err := readAdded(dir)
	if err != nil {
		return fail(err)
	}
	name := packageName(spec.Language, pkg)
	i := slices.IndexFunc(added, func(a string) bool { return a == pkg || packageName(spec.Language, a) == name })
	switch {
	case add && i >= 0:
		added[i] = pkg
	case add:
		added = append(added, pkg)
	case i >= 0:
		added = slices.Delete(added, i, i+1)
	default:
		return fail(errors.New("not added with deps add (a package the service declares is changed by changing the service)"))
	}
	if _, err := d.install(ctx, spec, tc, dir, added); err != nil {
		return fail(err)
	}
	raw, err := json.Marshal(added)
	if err != nil {
		return fail(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, depsAdded), raw); err != nil {
		return fail(err)
	}
	return nil
}

// checkPackageSpec refuses what could be read as an option or break a
// requirements file.
func checkPackageSpec(pkg string) error {
	switch {
	case strings.TrimSpace(pkg) == "":
		return errors.New("empty package")
	case strings.HasPrefix(strings.TrimSpace(pkg), "-"):
		return errors.New("a package must not start with '-'")
	case strings.ContainsAny(pkg, "\n\r\x00"):
		return errors.New("a package must be one line")
	}
	return nil
}

// install installs spec's manifest plus added into dir unless an identical
// install exists, makes it current, and returns its directory ("" when
// there is nothing to install).
//
// What is installed is checked first (deps_check.go): unless
// Config.AllowAnyDepSource, only registry names with version specifiers,
// so that no service-supplied code runs at install. The installer then runs
// in a sandbox like a worker's, in a network namespace of its own: with a
// local registry directory it has no network at all, else it reaches the
// registry's host and port, and nothing else, through the egress proxy
// (egress.go). pip installs wheels only (--only-binary=:all:) and npm runs
// no scripts (--ignore-scripts), so registry packages run no code either.
func (d *Driver) install(ctx context.Context, spec sandbox.Spec, tc *toolchain, dir string, added []string) (string, error) {
	fail := func(err error) (string, error) { return "", fmt.Errorf("dependencies: %w", err) }
	registry := d.cfg.Registries[spec.Language]
	local := filepath.IsAbs(registry)
	allowAny := d.cfg.AllowAnyDepSource
	localReg := ""
	if local {
		localReg = registry
	}
	for _, a := range added {
		if err := checkAdded(spec.Language, a, localReg, allowAny); err != nil {
			return fail(err)
		}
	}

	manifest := nodeManifest
	var src, lock []byte // Node.js: package.json and its lock
	var py pyRequirements
	switch spec.Language {
	case LangNode:
		var err error
		src, err = os.ReadFile(filepath.Join(spec.Dir, nodeManifest))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
		if len(added) == 0 && !declaresDeps(src) {
			src = nil // a package.json without dependencies (say, only "type")
		}
		if len(src) > 0 {
			lock, _ = os.ReadFile(filepath.Join(spec.Dir, nodeLock))
		}
		if len(src) > 0 && !allowAny {
			if err := checkPackageJSON(src); err != nil {
				return fail(err)
			}
			if len(lock) > 0 {
				if err := checkPackageLock(lock); err != nil {
					return fail(err)
				}
			}
		}
	case LangPython:
		manifest = pythonManifest
		var err error
		if py, err = readRequirements(spec.Dir, pythonManifest, allowAny); err != nil {
			return fail(err)
		}
		if !slices.ContainsFunc(py.reqs, func(l string) bool { return !strings.HasPrefix(l, "-") || strings.HasPrefix(l, "-e") }) {
			py.reqs = nil // nothing but options
		}
		src = []byte(strings.Join(py.reqs, "\n") + "\x00" + strings.Join(py.constraints, "\n"))
		if len(py.reqs) == 0 {
			src = nil
		}
	}
	if len(src) == 0 && len(added) == 0 {
		// Nothing (any more): no install is current.
		if err := os.Remove(filepath.Join(dir, depsCurrent)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
		pruneInstalls(dir, "")
		return "", nil
	}
	if len(tc.installer) == 0 {
		return "", fmt.Errorf("dependencies: the service has %s but this node has no installer for %s (Debian: apt-get install %s)",
			manifest, spec.Language, map[string]string{LangNode: "npm", LangPython: "python3-pip"}[spec.Language])
	}
	hosts, err := registryHosts(spec.Language, registry)
	if err != nil {
		return fail(err)
	}
	h := sha256.New()
	for _, part := range append([]string{spec.Language, string(src), string(lock), registry, tc.version, tc.installerVersion}, added...) {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	name := "v-" + hex.EncodeToString(h.Sum(nil)[:8])
	final := filepath.Join(dir, name)
	if _, err := os.Stat(filepath.Join(final, installDone)); err == nil {
		return final, setCurrent(dir, name)
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	stage, err := os.MkdirTemp(dir, ".install-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return fail(err)
	}

	l := layout{tools: tc.mounts, scratch: max(d.cfg.Scratch, 256<<20)}
	if allowAny {
		// Local paths in the manifest are the service's.
		l.binds = append(l.binds, bind{source: spec.Dir, target: svcDir})
	}
	if local {
		l.binds = append(l.binds, bind{source: registry, target: localRegistry, noexec: true})
		// Package files named by their host path are seen under /registry.
		added = slices.Clone(added)
		for i, a := range added {
			if rel, err := filepath.Rel(registry, a); err == nil && filepath.IsAbs(a) && filepath.IsLocal(rel) {
				added[i] = localRegistry + "/" + filepath.ToSlash(rel)
			}
		}
	}
	env := []string{"PATH=" + path.Dir(tc.exe) + ":" + sandboxPath, "HOME=" + scratchDir, "TMPDIR=" + scratchDir, "LANG=C.UTF-8"}
	var argv []string
	var cwd string
	switch spec.Language {
	case LangNode:
		pkgJSON, rewrote, err := rewritePackageJSON(src)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", nodeManifest, err))
		}
		if err := os.WriteFile(filepath.Join(stage, nodeManifest), pkgJSON, 0o644); err != nil {
			return fail(err)
		}
		if len(lock) > 0 && !rewrote {
			if err := os.WriteFile(filepath.Join(stage, nodeLock), lock, 0o644); err != nil {
				return fail(err)
			}
		}
		l.binds = append(l.binds, bind{source: stage, target: installNode, write: true, noexec: true})
		cwd = installNode
		argv = append(slices.Clone(tc.installer), "install", "--no-audit", "--no-fund", "--ignore-scripts",
			"--omit=dev", "--install-links", "--no-update-notifier", "--loglevel=warn", "--cache", scratchDir+"/.npm")
		switch {
		case local:
			argv = append(argv, "--offline")
		default:
			if registry == "" {
				registry = "https://registry.npmjs.org/"
			}
			argv = append(argv, "--registry", registry, "--proxy", egressProxyURL, "--https-proxy", egressProxyURL)
		}
		if len(added) > 0 {
			argv = append(argv, "--save")
			argv = append(argv, added...)
		}
	case LangPython:
		reqs := strings.Join(append(slices.Clone(py.reqs), added...), "\n") + "\n"
		if err := os.WriteFile(filepath.Join(stage, pythonManifest), []byte(reqs), 0o644); err != nil {
			return fail(err)
		}
		l.binds = append(l.binds, bind{source: stage, target: installPython, write: true, noexec: true})
		cwd = installPython
		if allowAny {
			cwd = svcDir // relative paths in requirements.txt are the service's
		}
		argv = append(slices.Clone(tc.installer), "install", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
			"--no-warn-script-location", "--only-binary=:all:", "--target", installPython+"/"+pySubdir, "-r", installPython+"/"+pythonManifest)
		if len(py.constraints) > 0 {
			const constraints = "constraints.txt"
			if err := os.WriteFile(filepath.Join(stage, constraints), []byte(strings.Join(py.constraints, "\n")+"\n"), 0o644); err != nil {
				return fail(err)
			}
			argv = append(argv, "-c", installPython+"/"+constraints)
		}
		switch {
		case local:
			argv = append(argv, "--no-index", "--find-links", localRegistry)
		case registry != "":
			argv = append(argv, "--index-url", registry, "--proxy", egressProxyURL)
			if u, err := url.Parse(registry); err == nil && u.Scheme == "http" {
				// The operator chose a plain-HTTP registry: pip takes it
				// only from a host it is told to trust.
				argv = append(argv, "--trusted-host", u.Host)
			}
		default:
			argv = append(argv, "--proxy", egressProxyURL)
		}
	}
	if host := d.host(); host.ns.root {
		// The installer runs as the sandbox's uid: let it write here.
		err := filepath.Walk(stage, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				err = os.Lchown(p, host.ns.hostID.uid, host.ns.hostID.gid)
			}
			return err
		})
		if err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.InstallTimeout)
	defer cancel()
	start := time.Now()
	out, err := d.runInstaller(ctx, spec.Service+"-install", l, cwd, argv, env, hosts, limits{memory: d.cfg.InstallMemory, pids: 512})
	if err != nil {
		return fail(err)
	}
	d.cfg.Logger.Info("dependencies installed", "service", spec.Service, "language", spec.Language, "took", time.Since(start).Round(time.Millisecond), "output", strings.TrimSpace(string(out)))
	if spec.Language == LangNode {
		// npm leaves no node_modules when everything declared is optional
		// and missing: the workers mount one anyway.
		if err := os.MkdirAll(filepath.Join(stage, nodeSubdir), 0o755); err != nil {
			return fail(err)
		}
	}
	if err := os.WriteFile(filepath.Join(stage, installDone), nil, 0o644); err != nil {
		return fail(err)
	}
	if err := os.Rename(stage, final); err != nil {
		return fail(err)
	}
	if err := setCurrent(dir, name); err != nil {
		return "", err
	}
	pruneInstalls(dir, name)
	return final, nil
}

// declaresDeps reports whether package.json src declares dependencies npm
// would install (devDependencies are not installed).
func declaresDeps(src []byte) bool {
	var pkg struct {
		Dependencies, OptionalDependencies map[string]any
	}
	if json.Unmarshal(src, &pkg) != nil {
		return len(src) > 0 // let npm say what is wrong with it
	}
	return len(pkg.Dependencies)+len(pkg.OptionalDependencies) > 0
}

// rewritePackageJSON returns package.json with every relative "file:"
// dependency made absolute under /service, where the installer sees the
// service, and whether it changed anything.
func rewritePackageJSON(src []byte) ([]byte, bool, error) {
	if len(src) == 0 {
		return []byte("{}\n"), false, nil
	}
	var pkg map[string]any
	if err := json.Unmarshal(src, &pkg); err != nil {
		return nil, false, err
	}
	rewrote := false
	for _, field := range []string{"dependencies", "optionalDependencies"} {
		deps, _ := pkg[field].(map[string]any)
		for name, v := range deps {
			s, _ := v.(string)
			if rel, ok := strings.CutPrefix(s, "file:"); ok && !path.IsAbs(rel) {
				deps[name] = "file:" + path.Join(svcDir, rel)
				rewrote = true
			}
		}
	}
	out, err := json.MarshalIndent(pkg, "", "  ")
	return append(out, '\n'), rewrote, err
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

// runOnce runs argv in a sandbox built from l, with working directory cwd
// inside it, and returns its standard output and error (their last 32 KiB).
// It fails when the command exits non-zero or ctx ends first.
func (d *Driver) runOnce(ctx context.Context, name string, l layout, cwd string, argv, env []string, lim limits) ([]byte, error) {
	h := d.host()
	ops, skel := l.build()
	root, err := skeletonDir(d.cfg.WorkDir, skel)
	if err != nil {
		return nil, err
	}
	c := initConfig{Root: root, Mounts: ops, Hostname: sandboxHost, Loopback: !l.network, Files: d.cfg.Files,
		Seccomp: h.seccompErr == nil, Dir: cwd, Argv: argv, Env: env}
	if _, ok := h.cg.ctl[ctlPids]; !ok {
		c.NProc = lim.pids
	}
	sp, err := spawn(h.ns, h.cg, name, lim, l.network, &c)
	if err != nil {
		return nil, err
	}
	sp.stdin.Close()
	var mu sync.Mutex
	out := &tailWriter{max: 32 << 10}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{sp.stdout, sp.stderr} {
		readers.Go(func() {
			buf := make([]byte, 8<<10)
			for {
				n, err := r.Read(buf)
				mu.Lock()
				out.write(buf[:n])
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	type waited struct {
		state *os.ProcessState
		err   error
	}
	done := make(chan waited, 1)
	go func() {
		st, err := sp.p.Wait()
		done <- waited{st, err}
	}()
	var w waited
	select {
	case w = <-done:
	case <-ctx.Done():
		sp.killGroup()
		w = <-done
	}
	sp.killGroup() // anything it left behind
	readers.Wait()
	sp.stdout.Close()
	sp.stderr.Close()
	_ = sp.cg.remove(2 * time.Second)
	shown := argv
	if len(shown) > 3 && shown[0] == egressBin {
		shown = shown[3:] // the installer, not its forwarder
	}
	what := strings.Join(shown[:min(len(shown), 3)], " ")
	switch {
	case ctx.Err() != nil:
		return out.bytes(), fmt.Errorf("%s: %w\n%s", what, ctx.Err(), strings.TrimSpace(string(out.bytes())))
	case w.err != nil:
		return out.bytes(), w.err
	case !w.state.Success():
		return out.bytes(), fmt.Errorf("%s: %v\n%s", what, w.state, strings.TrimSpace(string(out.bytes())))
	}
	return out.bytes(), nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (t *tailWriter) write(p []byte) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

func (t *tailWriter) bytes() []byte { return t.buf }
