// Package wasm is the WebAssembly driver: it runs services compiled to
// WebAssembly with WASI preview 1 in-process on wazero (pure Go, no cgo).
//
// A module is compiled once per driver and cached on disk, so a restarted
// node loads machine code instead of compiling again. The driver tells the
// two guest shapes apart by their exports: a command exports _start and
// reads its input on stdin and writes its output on stdout; a reactor
// exports the Andromeda reactor ABI (andromeda_alloc, andromeda_invoke; see
// docs/wasm-abi.md) and stays instantiated across invocations. In server
// mode reactors are kept in a pool of warm instances; commands, and every
// guest in command mode, get a fresh instance per invocation.
//
// Isolation: a guest has no file system (no preopened directories), no
// sockets, no environment variables and a single argument, the service
// name; it can import nothing but the functions of WASI preview 1 and the
// node's own host module (andromeda.usage, to report usage counters). Its
// linear memory is capped (Limits.Memory rounded down to 64 KiB pages), its
// tables are bounded (see Deploy), its time is capped (the deadline closes
// the module even in a loop that never calls the host), and a sleeping guest
// wakes at the deadline. Clocks are the host's real wall and monotonic
// clocks and random bytes come from crypto/rand; nothing else of the host is
// visible.
//
// Memory of the node: every live instance reserves its most memory from one
// budget shared by all the driver's deployments (Config.MemoryBudget); an
// instantiation that does not fit waits for memory to be released, idle warm
// instances are closed to make room, and a deployment whose one instance
// would not fit in the whole budget is refused.
//
// A panic inside the driver (in wazero, a host function or the driver
// itself) never leaves Deploy or Invoke: Deploy returns it as an error,
// Invoke as an Exit with Outcome Crashed, and the deployment stays usable.
//
// Cost of the time cap: wazero stops a guest at its deadline (RuntimeConfig
// WithCloseOnContextDone) by watching each call's context and compiling a
// check into every loop header. It is the only way to stop a guest that
// never calls the host without blocking the Go runtime, so the driver always
// pays it. wazero v1.12 pays it dearly: a goroutine per call, and an exit
// from native code to Go at every loop iteration (wazero issue #2466), which
// made a Go guest's JSON handling 4 to 10 times slower. The module builds
// with a patched copy of v1.12 instead (third_party/wazero; PATCHED there
// says what and why, and TestWazeroPatch flags a newer release): a call's
// watch is a context.AfterFunc, and a loop header tests the module's closed
// flag inline, leaving native code only when it is set or every 1024 loop
// headers, where the Go scheduler and the collector can stop the goroutine
// (native code gives them no other place: TestSpinOnEveryP). The cap now
// costs a Go guest about 1.1 to 1.4 times its time without it
// (BenchmarkReactorInvoke/bare over bare-no-close), and a trivial call well
// under a microsecond (tiny-bare). The check sits at loop headers only, so a
// guest recursing without loops would escape the deadline (a recursion tree
// can run for hours, Stop included): Deploy puts an empty loop at the start
// of every function, whose check costs a Go guest a few percent more
// (BenchmarkReactorInvoke/driver over bare). A guest that never calls the
// host stops a fraction of a millisecond after its deadline at the median,
// a few milliseconds at p99 on a loaded machine (BenchmarkTimeoutOvershoot),
// as with upstream; some 10 ms later when every core runs one.
//
// Known gap: a guest's call stack is wazero's, grown up to about 100 MiB per
// call (some 160 MiB allocated by the time it overflows, within about a
// second) and kept by the instance; it is outside both the memory cap and
// the node's budget.
//
// The package does not judge outputs against the contract: it reports what
// the guest did in a sandbox.Exit, and sandbox.Call judges.
package wasm

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/andromeda-runner/andromeda/sandbox"
)

var _ sandbox.Driver = (*Driver)(nil)

// Defaults for the zero fields of Config.
const (
	DefaultMemory      = 64 << 20
	DefaultTimeout     = 30 * time.Second
	DefaultConcurrency = 4
	DefaultMaxOutput   = 4 << 20
	DefaultMaxLog      = 8 << 10
	// DefaultMemoryBudget is 1 GiB: sixteen instances at the default memory
	// limit, or one 512 MiB guest with room for the growth copies of its
	// memory (a grow allocates the new memory before the old one is freed,
	// so a guest at 512 MiB briefly takes 768 MiB), on a node with 2 GiB or
	// more. A fixed figure rather than a share of the host's memory, so that
	// what a node accepts does not change with the machine it lands on; set
	// it from the memory the node can give its guests.
	DefaultMemoryBudget = 1 << 30
)

// pageSize is the size of a WebAssembly memory page.
const pageSize = 64 << 10

// Config configures a Driver. The zero value is valid: every zero field takes
// its default.
type Config struct {
	// CacheDir is the directory where compiled modules are cached, so that a
	// restarted node does not compile them again. It is created if missing,
	// must be private to the node (the cache holds machine code the node
	// runs), and its entries are specific to the wazero version. Empty keeps
	// compiled modules in memory only.
	CacheDir string
	// Memory is the memory cap of a deployment whose Limits.Memory is zero.
	// Default DefaultMemory (64 MiB).
	Memory int64
	// Timeout bounds an invocation whose deployment has no Limits.Timeout.
	// The earlier of this and the ctx deadline applies. Default
	// DefaultTimeout (30 s).
	Timeout time.Duration
	// Concurrency is the most warm instances a server-mode reactor keeps
	// when Limits.Concurrency is zero. Default DefaultConcurrency (4).
	Concurrency int
	// MaxOutput is the most output a guest may produce; more ends the
	// invocation as crashed. Default DefaultMaxOutput (4 MiB).
	MaxOutput int
	// MaxLog is how much of a guest's standard error (and, for reactors,
	// standard output) is kept for Exit.Detail: its first quarter and its
	// last three quarters. Default DefaultMaxLog (8 KiB).
	MaxLog int
	// MemoryBudget bounds, in bytes, the memory that all the driver's live
	// wasm instances together may reserve: warm reactor instances in pools
	// and running command instances. An instance reserves its linear
	// memory's maximum (its declared maximum or the memory limit, the
	// smaller) plus its tables. An invocation whose instance does not fit
	// waits until memory is released (idle warm instances are closed to make
	// room), at most until its deadline, and then ends with Outcome Skipped;
	// Deploy refuses a service whose one instance needs more than the whole
	// budget. It must be at least Memory. Default DefaultMemoryBudget (1 GiB).
	MemoryBudget int64
}

// DefaultConfig returns the configuration New uses for zero fields.
func DefaultConfig() Config {
	return Config{
		Memory:      DefaultMemory,
		Timeout:     DefaultTimeout,
		Concurrency: DefaultConcurrency,
		MaxOutput:   DefaultMaxOutput,
		MaxLog:      DefaultMaxLog,

		MemoryBudget: DefaultMemoryBudget,
	}
}

// Validate reports the fields of c that are out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Memory < 0 || (c.Memory > 0 && c.Memory < pageSize) {
		errs = append(errs, fmt.Errorf("memory: must be at least one 64 KiB page, got %d bytes", c.Memory))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative, got %v", c.Timeout))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency: must not be negative, got %d", c.Concurrency))
	}
	if c.MaxOutput < 0 {
		errs = append(errs, fmt.Errorf("max_output: must not be negative, got %d", c.MaxOutput))
	}
	if c.MaxLog < 0 {
		errs = append(errs, fmt.Errorf("max_log: must not be negative, got %d", c.MaxLog))
	}
	if c.MemoryBudget < 0 {
		errs = append(errs, fmt.Errorf("memory_budget: must not be negative, got %d", c.MemoryBudget))
	} else if d := c.withDefaults(); c.Memory >= 0 && d.MemoryBudget < d.Memory {
		errs = append(errs, fmt.Errorf("memory_budget: must be at least memory (%d bytes), got %d", d.Memory, d.MemoryBudget))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Memory > 0 {
		d.Memory = c.Memory
	}
	if c.Timeout > 0 {
		d.Timeout = c.Timeout
	}
	if c.Concurrency > 0 {
		d.Concurrency = c.Concurrency
	}
	if c.MaxOutput > 0 {
		d.MaxOutput = c.MaxOutput
	}
	if c.MaxLog > 0 {
		d.MaxLog = c.MaxLog
	}
	if c.MemoryBudget > 0 {
		d.MemoryBudget = c.MemoryBudget
	}
	d.CacheDir = c.CacheDir
	return d
}

// Driver is the wasm driver. It owns one wazero runtime, created on first
// use, shared by all its deployments. Safe for concurrent use; Close it when
// done.
type Driver struct {
	cfg    Config
	cfgErr error

	once    sync.Once
	openErr error
	rt      wazero.Runtime
	cache   wazero.CompilationCache
	wasi    map[string]api.FunctionDefinition // the functions a guest may import
	host    map[string]api.FunctionDefinition // the andromeda host module's functions

	budget *budget
	idle   idleLRU // every deployment's warm instances, for eviction

	mu     sync.Mutex
	deps   map[*deployment]struct{}
	closed bool
}

// New returns a driver with cfg; zero fields take their defaults. New has no
// side effects: the runtime and the cache directory are created on first
// use, and an invalid cfg is reported by Test and Deploy.
func New(cfg Config) *Driver {
	d := &Driver{cfg: cfg.withDefaults(), cfgErr: cfg.Validate(), deps: map[*deployment]struct{}{}}
	d.budget = &budget{total: d.cfg.MemoryBudget, evict: d.evictIdle}
	return d
}

// Name returns "wasm".
func (d *Driver) Name() string { return "wasm" }

// open creates the runtime on first use.
func (d *Driver) open() error {
	d.once.Do(func() {
		if d.cfgErr != nil {
			d.openErr = fmt.Errorf("wasm config: %w", d.cfgErr)
			return
		}
		var err error
		if d.cfg.CacheDir != "" {
			d.cache, err = wazero.NewCompilationCacheWithDir(d.cfg.CacheDir)
			if err != nil {
				d.openErr = fmt.Errorf("open compilation cache %s: %w", d.cfg.CacheDir, err)
				return
			}
		} else {
			d.cache = wazero.NewCompilationCache()
		}
		ctx := context.Background()
		// CloseOnContextDone makes compiled code check for a done context at
		// loop headers (and, with the empty loop rewriteModule puts there, at
		// function entries), so a deadline stops a guest that never calls
		// the host. DWARF is off: the rewrite moves the code it describes,
		// and it is guest-supplied data wazero would parse and keep; traps
		// still name functions (from the name section).
		d.rt = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
			WithCloseOnContextDone(true).
			WithDebugInfoEnabled(false).
			WithCompilationCache(d.cache))
		if _, err := wasi_snapshot_preview1.Instantiate(ctx, d.rt); err != nil {
			_ = d.rt.Close(ctx)
			_ = d.cache.Close(ctx)
			d.openErr = fmt.Errorf("instantiate wasi: %w", err)
			return
		}
		d.wasi = d.rt.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions()
		if err := instantiateHost(ctx, d.rt); err != nil {
			_ = d.rt.Close(ctx)
			_ = d.cache.Close(ctx)
			d.openErr = err
			return
		}
		d.host = d.rt.Module(hostModule).ExportedFunctionDefinitions()
	})
	if d.openErr != nil {
		return d.openErr
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("wasm driver closed")
	}
	return nil
}

// selfTest is the module Test runs: a WASI command echoing stdin to stdout
// (source: echo.wat).
//
//go:embed echo.wasm
var selfTest []byte

// Test compiles and runs a tiny embedded command module through the same
// path as any deployment and checks that its output is its input.
func (d *Driver) Test(ctx context.Context) error {
	if err := d.open(); err != nil {
		return fmt.Errorf("test wasm: %w", err)
	}
	spec := sandbox.Spec{Service: "wasm-self-test", Mode: sandbox.ModeCommand, Entry: "echo.wasm"}
	dep, err := d.deploy(ctx, spec, selfTest)
	if err != nil {
		return fmt.Errorf("test wasm: %w", err)
	}
	defer dep.Stop(context.Background())
	in := []byte(`{"noop":"wasm self-test"}`)
	exit, err := dep.Invoke(ctx, in)
	if err != nil {
		return fmt.Errorf("test wasm: %w", err)
	}
	if exit.Outcome != sandbox.OK || !bytes.Equal(exit.Output, in) {
		return fmt.Errorf("test wasm: echo module returned %s %q (%s), want ok %q", exit.Outcome, exit.Output, exit.Detail, in)
	}
	return nil
}

// Offer says what the driver runs: any language compiled to WebAssembly with
// WASI preview 1, in both modes.
func (d *Driver) Offer() sandbox.Offer {
	return sandbox.Offer{
		Driver: d.Name(),
		Languages: map[string]string{
			"wasm": "wazero " + wazeroVersion(),
			"go":   "wasip1 (command: go1.21+, reactor: go1.24+ -buildmode=c-shared)",
			"rust": "wasm32-wasip1",
			"c":    "wasm32-wasip1 (wasi-sdk)",
			"zig":  "wasm32-wasi",
		},
		Modes: []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand},
		Isolation: map[string]bool{
			"no-fs":      true,
			"no-network": true,
			"no-env":     true,
			"memory-cap": true,
			"timeout":    true,
		},
		Notes: []string{
			"clocks are the host's real wall and monotonic clocks; random bytes come from crypto/rand",
			"usage.cpu is the wall time of the guest call: a wasm guest runs on one host thread",
			"limits.cpu and limits.pids do not apply: a guest has one thread and cannot start processes",
			"memory-cap bounds linear memory and tables; a guest's call stack (up to about 100 MiB) is not counted",
		},
	}
}

// wazeroVersion is the wazero module version this binary was built with.
func wazeroVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, m := range info.Deps {
			if m.Path == "github.com/tetratelabs/wazero" {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return "(unknown version)"
}

// Deploy reads the module at spec.Dir/spec.Entry, compiles it (or loads it
// from the cache), checks that it imports nothing but functions of WASI
// preview 1 and that it is a command or a reactor, and returns a deployment.
// An unknown mode or a module the driver cannot run (malformed, importing
// anything else) is sandbox.ErrUnsupported. An empty spec.Mode means
// server. spec.Network grants nothing here: WASI preview 1 has no sockets,
// so a granted network only matters to the http actions the service
// returns. Limits.CPU and Limits.Pids do not apply (one thread, no
// processes). The caller owns the deployment and must Stop it; Close stops
// the ones still running.
//
// Memory rules, for every memory the module defines, exported or not: a
// minimum above the memory limit (Limits.Memory, else Config.Memory, in whole
// 64 KiB pages) is refused; a maximum that is missing or above the limit is
// capped at the limit rather than refused, since toolchains declare none by
// default (a grow past it fails in the guest, and the invocation ends as
// OOM). Tables hold at most 1 Mi elements in all: a table without a maximum,
// or whose maximum would take them past that, is fixed at its minimum size,
// and tables whose minimums alone exceed it are refused. A function may
// declare at most 50 000 locals (16 Mi in all). A module whose one instance
// would reserve more than Config.MemoryBudget is refused.
func (d *Driver) Deploy(ctx context.Context, spec sandbox.Spec) (sandbox.Deployment, error) {
	if err := d.open(); err != nil {
		return nil, fmt.Errorf("deploy %s: %w", spec.Service, err)
	}
	if !filepath.IsLocal(spec.Entry) {
		return nil, fmt.Errorf("deploy %s: entry %q: must be a relative path inside the service directory", spec.Service, spec.Entry)
	}
	bin, err := os.ReadFile(filepath.Join(spec.Dir, spec.Entry))
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", spec.Service, err)
	}
	dep, err := d.deploy(ctx, spec, bin)
	if err != nil {
		return nil, err
	}
	return dep, nil
}

// Close stops every deployment still running, without a grace period, and
// releases the runtime. Safe to call more than once.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	deps := make([]*deployment, 0, len(d.deps))
	for dep := range d.deps {
		deps = append(deps, dep)
	}
	d.mu.Unlock()

	now, cancel := context.WithCancel(context.Background())
	cancel()
	var errs []error
	for _, dep := range deps {
		if err := dep.Stop(now); err != nil {
			errs = append(errs, err)
		}
	}
	if d.rt != nil {
		ctx := context.Background()
		if err := d.rt.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close wazero runtime: %w", err))
		}
		if err := d.cache.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close compilation cache: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Shapes of guest module.
type shape int

const (
	command shape = iota // exports _start
	reactor              // exports the reactor ABI
)

func (s shape) String() string {
	if s == reactor {
		return "reactor"
	}
	return "command"
}

// The reactor ABI's exports (docs/wasm-abi.md).
const (
	exportAlloc  = "andromeda_alloc"
	exportInvoke = "andromeda_invoke"
	exportMemory = "memory"
)

// deploy compiles bin and builds the deployment for spec. A panic in wazero
// or in the checks is returned as an error.
func (d *Driver) deploy(ctx context.Context, spec sandbox.Spec, bin []byte) (dep *deployment, err error) {
	fail := func(err error) (*deployment, error) {
		return nil, fmt.Errorf("deploy %s: %w", spec.Service, err)
	}
	defer func() {
		if r := recover(); r != nil {
			dep, err = nil, fmt.Errorf("deploy %s: driver panic: %v", spec.Service, r)
		}
	}()
	mode := spec.Mode
	if mode == "" {
		mode = sandbox.ModeServer
	}
	if mode != sandbox.ModeServer && mode != sandbox.ModeCommand {
		return fail(fmt.Errorf("%w: mode %q", sandbox.ErrUnsupported, spec.Mode))
	}
	if !bytes.HasPrefix(bin, []byte("\x00asm")) {
		return fail(fmt.Errorf("%w: %s is not a WebAssembly binary", sandbox.ErrUnsupported, spec.Entry))
	}
	limit := spec.Limits.Memory
	if limit == 0 {
		limit = d.cfg.Memory
	}
	pages := limit / pageSize
	if pages < 1 {
		return fail(fmt.Errorf("memory limit %d bytes: below one 64 KiB page", limit))
	}
	pages = min(pages, 1<<16) // 4 GiB, the most a 32-bit memory can address

	// Walk the binary before wazero decodes it (see readModule: a malformed
	// vector length would make wazero abort the process), bound its tables
	// and make every function entry check the deadline (rewriteModule).
	info, err := readModule(bin)
	if err != nil {
		return fail(fmt.Errorf("%w: %s is malformed: %v", sandbox.ErrUnsupported, spec.Entry, err))
	}
	bin, tableElems, err := rewriteModule(bin, info)
	if err != nil {
		return fail(err)
	}
	compiled, err := d.rt.CompileModule(ctx, bin)
	if err != nil {
		return fail(fmt.Errorf("%w: compile %s: %v", sandbox.ErrUnsupported, spec.Entry, err))
	}
	keep := false
	defer func() {
		if !keep {
			_ = compiled.Close(context.Background())
		}
	}()
	if err := d.checkImports(compiled, info); err != nil {
		return fail(fmt.Errorf("%w: %s %v", sandbox.ErrUnsupported, spec.Entry, err))
	}

	// Every memory the module defines, exported or not: its minimum must
	// fit in the limit; its maximum, when missing or above the limit, is
	// capped by the limit (the allocator refuses a grow past it, and the
	// guest sees memory.grow return -1).
	var reserve, memMax uint64
	ownMax := false
	for _, m := range info.memories {
		if m.min > uint64(pages) {
			return fail(fmt.Errorf("memory: module needs %d pages (%s), the limit is %s", m.min, sizeString(m.min*pageSize), sizeString(uint64(pages)*pageSize)))
		}
		most := uint64(pages)
		if m.hasMax && m.max < most {
			most, ownMax, memMax = m.max, true, m.max*pageSize
		}
		reserve += most * pageSize
	}
	reserve += tableElems * tableElementSize
	if int64(reserve) > d.budget.total {
		return fail(fmt.Errorf("memory: an instance reserves %s (linear memory and tables), more than the node's memory budget for wasm guests (%s)", sizeString(reserve), sizeString(uint64(d.budget.total))))
	}

	exports := compiled.ExportedFunctions()
	var sh shape
	switch {
	case exports["_start"] != nil:
		sh = command
	case exports[exportAlloc] != nil && exports[exportInvoke] != nil:
		sh = reactor
		if err := checkABI(exports, compiled.ExportedMemories()); err != nil {
			return fail(fmt.Errorf("%w: %s: %v", sandbox.ErrUnsupported, spec.Entry, err))
		}
	default:
		return fail(fmt.Errorf("%w: %s exports neither _start (a WASI command) nor %s and %s (an Andromeda reactor)", sandbox.ErrUnsupported, spec.Entry, exportAlloc, exportInvoke))
	}

	timeout := spec.Limits.Timeout
	if timeout <= 0 {
		timeout = d.cfg.Timeout
	}
	poolSize := spec.Limits.Concurrency
	if poolSize <= 0 {
		poolSize = d.cfg.Concurrency
	}
	name := spec.Service
	if name == "" {
		name = "guest"
	}
	dep = &deployment{
		driver:    d,
		name:      name,
		shape:     sh,
		pooled:    sh == reactor && mode == sandbox.ModeServer,
		compiled:  compiled,
		memLimit:  uint64(pages) * pageSize,
		memMax:    memMax,
		ownMax:    ownMax,
		reserve:   int64(reserve),
		timeout:   timeout,
		poolSize:  poolSize,
		maxOutput: d.cfg.MaxOutput,
		maxLog:    d.cfg.MaxLog,
		logs:      newLogLimiter(spec.Log),
		base: wazero.NewModuleConfig().
			WithName(""). // anonymous: many instances of one module may live at once
			WithArgs(name).
			WithSysWalltime().
			WithSysNanotime().
			WithRandSource(randReader).
			WithStartFunctions(), // called by the deployment, to classify their failures
	}
	if len(spec.Volumes) > 0 {
		vols, fsCfg, err := openVolumes(spec.Volumes) // volume.go
		if err != nil {
			return fail(err)
		}
		dep.vols, dep.base = vols, dep.base.WithFSConfig(fsCfg)
	}
	dep.killCtx, dep.kill = context.WithCancel(context.Background())
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		dep.vols.close()
		return fail(errors.New("wasm driver closed"))
	}
	d.deps[dep] = struct{}{}
	d.mu.Unlock()
	keep = true
	return dep, nil
}

// checkImports checks that the module imports nothing but functions of WASI
// preview 1 and of the andromeda host module, each with the signature the
// host gives it: an import of a table, a memory or a global, or of anything
// else, would fail every instantiation.
func (d *Driver) checkImports(compiled wazero.CompiledModule, info moduleInfo) error {
	for _, imp := range info.imports {
		switch {
		case imp.kind == externMemory:
			return fmt.Errorf("imports a memory (%s.%s): a guest must define its own", imp.module, imp.name)
		case imp.kind != externFunc:
			return fmt.Errorf("imports a %s (%s.%s): a guest can import only functions of %s and %s", externName(imp.kind), imp.module, imp.name, wasi_snapshot_preview1.ModuleName, hostModule)
		case imp.module != wasi_snapshot_preview1.ModuleName && imp.module != hostModule:
			return fmt.Errorf("imports %s.%s: only %s and %s are provided", imp.module, imp.name, wasi_snapshot_preview1.ModuleName, hostModule)
		}
	}
	for _, f := range compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		provided := d.wasi
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
		case hostModule:
			provided = d.host
		default:
			return fmt.Errorf("imports %s.%s: only %s and %s are provided", mod, name, wasi_snapshot_preview1.ModuleName, hostModule)
		}
		w := provided[name]
		if w == nil {
			return fmt.Errorf("imports %s.%s: %s has no such function", mod, name, mod)
		}
		if !bytes.Equal(f.ParamTypes(), w.ParamTypes()) || !bytes.Equal(f.ResultTypes(), w.ResultTypes()) {
			return fmt.Errorf("imports %s.%s with type (%s) -> (%s), want (%s) -> (%s)", mod, name,
				types(f.ParamTypes()), types(f.ResultTypes()), types(w.ParamTypes()), types(w.ResultTypes()))
		}
	}
	return nil
}

func externName(kind byte) string {
	switch kind {
	case externTable:
		return "table"
	case externGlobal:
		return "global"
	case externTag:
		return "tag"
	}
	return fmt.Sprintf("kind %d", kind)
}

// checkABI checks the signatures of the reactor ABI's exports.
func checkABI(fns map[string]api.FunctionDefinition, mems map[string]api.MemoryDefinition) error {
	want := []struct {
		name           string
		params, result []api.ValueType
	}{
		{exportAlloc, []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
		{exportInvoke, []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}},
	}
	for _, w := range want {
		f := fns[w.name]
		if !bytes.Equal(f.ParamTypes(), w.params) || !bytes.Equal(f.ResultTypes(), w.result) {
			return fmt.Errorf("export %s has type (%s) -> (%s), want (%s) -> (%s)", w.name,
				types(f.ParamTypes()), types(f.ResultTypes()), types(w.params), types(w.result))
		}
	}
	if mems[exportMemory] == nil {
		return fmt.Errorf("a reactor must export its memory as %q", exportMemory)
	}
	if f := fns["_initialize"]; f != nil && (len(f.ParamTypes()) != 0 || len(f.ResultTypes()) != 0) {
		return errors.New("export _initialize must take and return nothing")
	}
	return nil
}

func types(ts []api.ValueType) string {
	var b []byte
	for i, t := range ts {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, api.ValueTypeName(t)...)
	}
	return string(b)
}

// evictIdle closes idle warm instances, of any deployment, the one idle
// longest first, until need bytes are freed or none is left.
func (d *Driver) evictIdle(need int64) {
	for need > 0 {
		ent, ok := d.idle.oldest()
		if !ok {
			return
		}
		dep, inst := ent.dep, ent.inst
		dep.mu.Lock()
		i := slices.Index(dep.idle, inst)
		if i < 0 {
			dep.mu.Unlock()
			continue // taken by a call since
		}
		dep.idle = slices.Delete(dep.idle, i, i+1)
		d.idle.remove(inst) // made idle again since
		dep.mu.Unlock()
		need -= inst.reserved
		inst.close()
	}
}

func (d *Driver) forget(dep *deployment) {
	d.mu.Lock()
	delete(d.deps, dep)
	d.mu.Unlock()
}
