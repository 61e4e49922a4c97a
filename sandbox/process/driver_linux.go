package process

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/runtimes/node"
	"github.com/andromeda-runner/andromeda/runtimes/python"
	"github.com/andromeda-runner/andromeda/sandbox"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

// Test is the self-test at node start. It fails, disabling the driver, when
// the configuration is invalid, the host cannot create the sandbox, an
// isolation layer does not hold that Config.AllowMissing does not list, or
// a built-in worker cannot answer an invocation from inside a complete
// sandbox. Then, for Node.js and Python, it looks for the toolchain and runs
// a one-line service through its shim; a language that is missing or fails
// is disabled (Offer leaves it out and says why in its notes, Deploy refuses
// it) and logged, without failing Test.
func (d *Driver) Test(ctx context.Context) error {
	if err := d.ready(); err != nil {
		return fmt.Errorf("test process: %w", err)
	}
	if err := d.checkLayers(); err != nil {
		return fmt.Errorf("test process: %w", err)
	}
	const msg = `"process self-test"`
	want := "self-test: " + msg
	check := func(lang string, spec sandbox.Spec, builtin string) error {
		spec.Service = "self-test-" + lang
		spec.Mode = sandbox.ModeServer
		spec.Language = lang
		spec.Limits.Concurrency = 1
		dep, err := d.deploy(ctx, spec, builtin)
		if err != nil {
			return err
		}
		defer dep.Stop(context.Background())
		exit, err := dep.Invoke(ctx, []byte(`{"run_id":"self-test","service":"self-test","trigger":{"kind":"manual"},"message":`+msg+`,"state":{},"config":{}}`))
		if err != nil {
			return err
		}
		if exit.Outcome != sandbox.OK || !bytes.Contains(exit.Output, []byte(`"noop":`)) || !strings.Contains(string(exit.Output), strings.ReplaceAll(want, `"`, `\"`)) {
			return fmt.Errorf("self-test service returned %s %s (%s), want a noop %q", exit.Outcome, exit.Output, exit.Detail, want)
		}
		return nil
	}
	if err := check(LangExec, sandbox.Spec{}, "echo"); err != nil {
		return fmt.Errorf("test process: built-in worker in a sandbox: %w", err)
	}
	tools := d.toolchains(ctx)
	for _, lang := range []string{LangNode, LangPython} {
		tc := tools[lang]
		if tc.err != nil {
			d.cfg.Logger.Warn("process driver: language disabled", "language", lang, "reason", tc.err.Error())
			continue
		}
		dir, entry, err := d.selfTestService(lang)
		if err == nil {
			err = check(lang, sandbox.Spec{Dir: dir, Entry: entry}, "")
		}
		if err != nil {
			d.mu.Lock()
			if d.disabled == nil {
				d.disabled = map[string]string{}
			}
			d.disabled[lang] = err.Error()
			d.mu.Unlock()
			d.cfg.Logger.Warn("process driver: language disabled", "language", lang, "reason", err.Error())
			continue
		}
		d.cfg.Logger.Info("process driver: language ready", "language", lang, "version", tc.version, "installer", tc.installerVersion)
	}
	return nil
}

// selfTestService writes the one-line service Test runs for lang.
func (d *Driver) selfTestService(lang string) (dir, entry string, err error) {
	src := map[string][2]string{
		LangNode:   {"index.js", "exports.handle = (input) => ({ noop: 'self-test: ' + JSON.stringify(input.message) });\n"},
		LangPython: {"main.py", "import json\n\ndef handle(input):\n    return {'noop': 'self-test: ' + json.dumps(input['message'])}\n"},
	}[lang]
	dir = filepath.Join(d.cfg.WorkDir, "self-test", lang)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, src[0]), []byte(src[1]), 0o644); err != nil {
		return "", "", err
	}
	return dir, src[0], nil
}

// ready checks what every operation needs: a valid configuration, an open
// driver, a host that can build the sandbox, and the work directory.
func (d *Driver) ready() error {
	if d.cfgErr != nil {
		return fmt.Errorf("process config: %w", d.cfgErr)
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return errClosed
	}
	if err := d.host().nsErr; err != nil {
		return err
	}
	// Private: workers see only what the init binds from it (skeletons,
	// shims, dependency dirs), never the directory itself.
	if err := os.MkdirAll(d.cfg.WorkDir, 0o700); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	return nil
}

// Deploy checks the service and its toolchain, installs its dependencies
// into its own dependency directory (package.json → node_modules,
// requirements.txt → a Python target directory; see InstallDeps), and
// starts its workers: Limits.Concurrency (default Config.Concurrency) warm
// workers in server mode, one in command mode to check that the service
// loads, then stopped. Every worker must answer ready within
// Config.StartTimeout or Deploy fails with the worker's error and the tail
// of its standard error.
//
// spec.Language is node, python or exec; spec.Entry is the service's file
// inside spec.Dir (a .js, .cjs or .mjs module; a .py module; an executable
// speaking the runtime protocol). spec.Dir and its files must be readable
// by others (the archive package unpacks 0755/0644): workers see it,
// read-only, at /service. spec.Network: none gives a worker its own network
// namespace with only loopback; any shares the host's; a host list is
// treated like none (see Offer's notes). An unknown mode or language, or a
// toolchain that is missing, is sandbox.ErrUnsupported. The caller owns the
// deployment and must Stop it; Close stops the ones still running. The
// deployment also implements Health() (healthy bool, reason string).
func (d *Driver) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	return d.deploy(ctx, spec, "")
}

func (d *Driver) deploy(ctx context.Context, spec sandbox.Spec, builtin string) (*deployment, error) {
	name := spec.Service
	if name == "" {
		name = "service"
	}
	fail := func(err error) (*deployment, error) { return nil, fmt.Errorf("deploy %s: %w", name, err) }
	if err := d.ready(); err != nil {
		return fail(err)
	}
	if err := d.checkLayers(); err != nil {
		return fail(err)
	}
	mode := spec.Mode
	if mode == "" {
		mode = sandbox.ModeServer
	}
	if mode != sandbox.ModeServer && mode != sandbox.ModeCommand {
		return fail(fmt.Errorf("%w: mode %q", sandbox.ErrUnsupported, spec.Mode))
	}
	tc, err := d.toolchain(ctx, spec.Language)
	if err != nil {
		return fail(err)
	}
	var entry string
	if builtin == "" {
		if entry, err = checkEntry(spec); err != nil {
			return fail(err)
		}
	}

	l := layout{tools: tc.mounts, network: spec.Network.Any, scratch: d.cfg.Scratch}
	module := worker.Module{ID: "main", Entry: entry}
	var argv []string
	path := sandboxPath
	if tc.exe != "" {
		if dir := filepath.Dir(tc.exe); !strings.Contains(":"+path+":", ":"+dir+":") {
			path = dir + ":" + path
		}
	}
	if builtin == "" {
		l.binds = append(l.binds, bind{source: spec.Dir, target: svcDir})
		deps, err := d.ensureDeps(ctx, spec, tc)
		if err != nil {
			return fail(err)
		}
		switch spec.Language {
		case LangNode:
			shim, err := d.writeShim(LangNode, node.File, node.Shim)
			if err != nil {
				return fail(err)
			}
			l.binds = append(l.binds, bind{source: shim, target: runtimeDir, noexec: true})
			if deps != "" {
				l.binds = append(l.binds, bind{source: deps, target: nodeModules})
			}
			argv = []string{tc.exe, runtimeDir + "/" + node.File}
		case LangPython:
			shim, err := d.writeShim(LangPython, python.File, python.Shim)
			if err != nil {
				return fail(err)
			}
			l.binds = append(l.binds, bind{source: shim, target: runtimeDir, noexec: true})
			if deps != "" {
				l.binds = append(l.binds, bind{source: deps, target: pythonDeps})
				module.Paths = []string{pythonDeps}
			}
			argv = []string{tc.exe, "-I", "-S", "-B", "-X", "utf8", runtimeDir + "/" + python.File}
		case LangExec:
			argv = []string{entry}
		}
	}
	ops, skel := l.build()
	root, err := skeletonDir(d.cfg.WorkDir, skel)
	if err != nil {
		return fail(err)
	}

	lim := limits{memory: spec.Limits.Memory, pids: spec.Limits.Pids, cpu: spec.Limits.CPU}
	if lim.memory <= 0 {
		lim.memory = d.cfg.Memory
	}
	if lim.pids <= 0 {
		lim.pids = d.cfg.Pids
	}
	if lim.cpu <= 0 {
		lim.cpu = d.cfg.CPU
	}
	h := d.host()
	nproc := 0
	if _, ok := h.cg.ctl[ctlPids]; !ok {
		nproc = lim.pids
	}
	timeout := spec.Limits.Timeout
	if timeout <= 0 {
		timeout = d.cfg.Timeout
	}
	pool := spec.Limits.Concurrency
	if pool <= 0 {
		pool = d.cfg.Concurrency
	}
	capacity := pool
	if mode == sandbox.ModeCommand {
		capacity = 1
	}
	init, err := json.Marshal(worker.Message{
		Type: worker.TypeInit, ID: "init", Protocol: worker.Version, Service: name,
		Modules: []worker.Module{module}, Config: json.RawMessage(`{}`),
		MaxLine: d.cfg.MaxLine, MaxInFlight: capacity,
	})
	if err != nil {
		return fail(err)
	}
	dep := &deployment{
		d:        d,
		name:     name,
		mode:     mode,
		lang:     spec.Language,
		init:     append(init, '\n'),
		lim:      lim,
		hostNet:  spec.Network.Any,
		timeout:  timeout,
		poolSize: pool,
		capacity: capacity,
		log:      spec.Log,
		live:     map[*workerProc]struct{}{},
		changed:  make(chan struct{}),
		timers:   map[*time.Timer]struct{}{},
		tmpl: initConfig{
			Root:     root,
			Mounts:   ops,
			Hostname: sandboxHost,
			Loopback: !spec.Network.Any,
			Files:    d.cfg.Files,
			NProc:    nproc,
			Seccomp:  h.seccompErr == nil,
			Dir:      svcDir,
			Argv:     argv,
			Env:      []string{"PATH=" + path, "HOME=" + scratchDir, "TMPDIR=" + scratchDir, "LANG=C.UTF-8"},
			Builtin:  builtin,
		},
	}
	if builtin != "" {
		dep.tmpl.Dir = "/"
	}
	if mode == sandbox.ModeServer {
		dep.slots = make([]*workerProc, pool)
	}
	if err := d.track(dep); err != nil {
		return fail(err)
	}
	if err := dep.start(ctx); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = dep.Stop(stopCtx)
		return fail(fmt.Errorf("self-check: %w", err))
	}
	return dep, nil
}

// checkEntry checks the service's entry and returns its path inside the
// sandbox.
func checkEntry(spec sandbox.Spec) (string, error) {
	if !filepath.IsLocal(spec.Entry) {
		return "", fmt.Errorf("entry %q: must be a relative path inside the service directory", spec.Entry)
	}
	fi, err := os.Stat(spec.Dir)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o005 != 0o005 {
		return "", fmt.Errorf("service dir %s has mode %v: workers run as another user and need it readable by others (o+rx)", spec.Dir, fi.Mode().Perm())
	}
	path := filepath.Join(spec.Dir, spec.Entry)
	fi, err = os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("entry: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("entry %s: not a regular file", spec.Entry)
	}
	ext := strings.ToLower(filepath.Ext(spec.Entry))
	switch spec.Language {
	case LangNode:
		if ext != ".js" && ext != ".cjs" && ext != ".mjs" {
			return "", fmt.Errorf("%w: node entry %s: want a .js, .cjs or .mjs file", sandbox.ErrUnsupported, spec.Entry)
		}
	case LangPython:
		if ext != ".py" {
			return "", fmt.Errorf("%w: python entry %s: want a .py file", sandbox.ErrUnsupported, spec.Entry)
		}
	case LangExec:
		if fi.Mode().Perm()&0o001 == 0 {
			return "", fmt.Errorf("exec entry %s has mode %v: it must be executable by others (o+x)", spec.Entry, fi.Mode().Perm())
		}
	}
	if fi.Mode().Perm()&0o004 == 0 && spec.Language != LangExec {
		return "", fmt.Errorf("entry %s has mode %v: it must be readable by others (o+r)", spec.Entry, fi.Mode().Perm())
	}
	return svcDir + "/" + filepath.ToSlash(spec.Entry), nil
}

// writeShim writes a language shim under the work dir, in a directory
// named after its contents, and returns the directory.
func (d *Driver) writeShim(lang, file string, src []byte) (string, error) {
	sum := sha256.Sum256(src)
	dir := filepath.Join(d.cfg.WorkDir, "runtimes", lang+"-"+hex.EncodeToString(sum[:6]))
	path := filepath.Join(dir, file)
	if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, src) {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write %s shim: %w", lang, err)
	}
	f, err := os.CreateTemp(dir, ".shim-")
	if err != nil {
		return "", fmt.Errorf("write %s shim: %w", lang, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("write %s shim: %w", lang, err)
	}
	return dir, nil
}
