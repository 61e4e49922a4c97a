package process

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"

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
	check := func(name string, spec sandbox.Spec, builtin string) error {
		spec.Service = "self-test-" + name
		spec.Mode = sandbox.ModeServer
		spec.Language = name
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
	// The toolchains are probed while the built-in worker is checked, and
	// the languages are checked at once: each probe and each first start
	// of an interpreter takes up to seconds, and they do not depend on
	// each other.
	toolsDone := make(chan map[string]*lang.Toolchain, 1)
	go func() { toolsDone <- d.toolchains(ctx) }()
	if err := check(LangExec, sandbox.Spec{}, builtinEcho); err != nil {
		<-toolsDone
		return fmt.Errorf("test process: built-in worker in a sandbox: %w", err)
	}
	tools := <-toolsDone
	var wg sync.WaitGroup
	for _, l := range lang.All {
		if l.SelfTest == "" {
			continue
		}
		name, tc := l.Name, tools[l.Name]
		if tc.Err != nil {
			d.cfg.Logger.Warn("process driver: language disabled", "language", name, "reason", tc.Err.Error())
			continue
		}
		wg.Go(func() { d.selfTestLanguage(l, tc, check) })
	}
	wg.Wait()
	return nil
}

// selfTestLanguage runs l's one-line service through check and disables
// the language if it fails (or enables it again if it passes).
func (d *Driver) selfTestLanguage(l *lang.Language, tc *lang.Toolchain, check func(string, sandbox.Spec, string) error) {
	name := l.Name
	dir, err := l.WriteSelfTest(d.cfg.WorkDir)
	if err == nil {
		err = check(name, sandbox.Spec{Dir: dir, Entry: l.Entry}, "")
	}
	if err != nil {
		d.mu.Lock()
		if d.disabled == nil {
			d.disabled = map[string]string{}
		}
		d.disabled[name] = err.Error()
		d.mu.Unlock()
		d.cfg.Logger.Warn("process driver: language disabled", "language", name, "reason", err.Error())
		return
	}
	d.mu.Lock()
	delete(d.disabled, name) // passed again (andromeda selftest)
	d.mu.Unlock()
	d.cfg.Logger.Info("process driver: language ready", "language", name, "version", tc.Version, "installer", tc.InstallerVersion)
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
	if err := d.host().err; err != nil {
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
	mode, module, tmpl, err := d.workerTemplate(ctx, spec, name, builtin)
	if err != nil {
		return fail(err)
	}
	dep, err := newPool(ctx, d.poolConfig(spec, name, mode, module, tmpl), func(dep *deployment) error {
		dep.onStop = func() { d.forget(dep) }
		return d.track(dep)
	})
	if err != nil {
		return fail(err)
	}
	return dep, nil
}

// workerJail returns the sandbox of spec's workers and the module their
// init message loads: the service at lang.ServiceDir, l's shim at
// lang.RuntimeDir and the service's dependencies, installed first, at
// l.DepsAt, all read-only; the toolchain; l's command line; a clean
// environment. A builtin worker gets none of the service's.
// workerTemplate checks that spec can run here (the driver is ready, its
// isolation layers hold, the mode and the language's toolchain are
// served) and prepares the jail its workers start from: what a deployment
// and a raw worker (StartRaw) both start with.
func (d *Driver) workerTemplate(ctx context.Context, spec sandbox.Spec, name, builtin string) (sandbox.Mode, worker.Module, *jail.Template, error) {
	if err := d.ready(); err != nil {
		return "", worker.Module{}, nil, err
	}
	if err := d.checkLayers(); err != nil {
		return "", worker.Module{}, nil, err
	}
	mode := spec.Mode
	if mode == "" {
		mode = sandbox.ModeServer
	}
	if mode != sandbox.ModeServer && mode != sandbox.ModeCommand {
		return "", worker.Module{}, nil, fmt.Errorf("%w: mode %q", sandbox.ErrUnsupported, spec.Mode)
	}
	l, tc, err := d.toolchain(ctx, spec.Language)
	if err != nil {
		return "", worker.Module{}, nil, err
	}
	if len(l.Modes) > 0 && !slices.Contains(l.Modes, mode) {
		return "", worker.Module{}, nil, fmt.Errorf("%w: the %s runtime serves %v mode only", sandbox.ErrUnsupported, l.Name, l.Modes)
	}
	js, module, err := d.workerJail(ctx, spec, l, tc, builtin)
	if err != nil {
		return "", worker.Module{}, nil, err
	}
	js.Name = name
	tmpl, err := d.host().jail.Prepare(js)
	if err != nil {
		return "", worker.Module{}, nil, err
	}
	return mode, module, tmpl, nil
}

func (d *Driver) workerJail(ctx context.Context, spec sandbox.Spec, l *lang.Language, tc *lang.Toolchain, builtin string) (jail.Spec, worker.Module, error) {
	path := jail.Path
	if tc.Exe != "" {
		if dir := filepath.Dir(tc.Exe); !strings.Contains(":"+path+":", ":"+dir+":") {
			path = dir + ":" + path
		}
	}
	js := jail.Spec{
		Tools:       tc.Mounts,
		HostNetwork: spec.Network.Any,
		Scratch:     d.cfg.Scratch,
		Limits:      d.limits(spec.Limits),
		Files:       d.cfg.Files,
		Dir:         lang.ServiceDir,
		Env:         []string{"PATH=" + path, "HOME=" + jail.Scratch, "TMPDIR=" + jail.Scratch, "LANG=C.UTF-8"},
		Builtin:     builtin,
	}
	module := worker.Module{ID: "main"}
	if builtin != "" {
		js.Dir = "/"
		return js, module, nil
	}
	entry, err := l.CheckEntry(spec.Dir, spec.Entry)
	if err != nil {
		return js, module, err
	}
	module.Entry = entry
	js.Binds = append(js.Binds, jail.Bind{Source: spec.Dir, Target: lang.ServiceDir})
	vols, err := d.volumeBinds(spec) // volumes_linux.go
	if err != nil {
		return js, module, err
	}
	js.Binds = append(js.Binds, vols...)
	deps, err := d.ensureDeps(ctx, spec, l, tc)
	if err != nil {
		return js, module, err
	}
	if l.Exe != "" {
		js.Binds = append(js.Binds, jail.Bind{Source: l.Exe, Target: lang.RuntimeDir + "/" + l.Name})
	}
	if l.Shim != nil {
		dir, err := l.WriteShim(d.cfg.WorkDir)
		if err != nil {
			return js, module, err
		}
		js.Binds = append(js.Binds, jail.Bind{Source: dir, Target: lang.RuntimeDir, NoExec: true})
	}
	if deps != "" {
		js.Binds = append(js.Binds, jail.Bind{Source: deps, Target: l.DepsAt})
		if l.OnPath {
			module.Paths = []string{l.DepsAt}
		}
	}
	js.Argv = l.Argv(tc.Exe, entry)
	return js, module, nil
}

// limits are a worker's limits: spec's, the configuration's where spec
// leaves them zero.
func (d *Driver) limits(spec sandbox.Limits) jail.Limits {
	lim := jail.Limits{Memory: spec.Memory, Pids: spec.Pids, CPU: spec.CPU}
	if lim.Memory <= 0 {
		lim.Memory = d.cfg.Memory
	}
	if lim.Pids <= 0 {
		lim.Pids = d.cfg.Pids
	}
	if lim.CPU <= 0 {
		lim.CPU = d.cfg.CPU
	}
	return lim
}

// poolConfig is the pool of spec's workers, started from tmpl and loading
// module, with the driver's settings.
func (d *Driver) poolConfig(spec sandbox.Spec, name string, mode sandbox.Mode, module worker.Module, tmpl *jail.Template) PoolConfig {
	spec.Service, spec.Mode = name, mode
	return PoolConfig{
		Config: d.cfg,
		Spec:   spec,
		Module: module,
		Start:  func(context.Context) (Proc, error) { return startJail(tmpl, d.cfg.ThrashAfter) },
	}
}
