package process

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// The languages the driver runs (Spec.Language); see lang.All.
const (
	LangNode   = lang.Node   // Node.js: entry is a .js, .cjs or .mjs file run by the runtimes/node shim
	LangPython = lang.Python // Python 3: entry is a .py file run by the runtimes/python shim
	LangExec   = lang.Exec   // any executable that speaks the runtime protocol itself
)

// DefaultEntry is the usual entry file of a service in language name:
// index.js, main.py, run; "" for a language the driver does not run.
func DefaultEntry(name string) string {
	if l := lang.Lookup(name); l != nil {
		return l.Entry
	}
	return ""
}

var _ sandbox.Driver = (*Driver)(nil)

// The isolation layers of Offer().Isolation. A policy refuses a service on
// a node whose offer says a layer it needs does not hold; Config.AllowMissing
// is the operator's list of layers a host may lack without Test failing.
const (
	LayerPIDNS      = "pid-ns"           // own PID namespace: sees only its own processes
	LayerMountNS    = "mount-ns"         // own mount namespace on a read-only skeleton root
	LayerIPCNS      = "ipc-ns"           // own System V IPC and POSIX message queues
	LayerUTSNS      = "uts-ns"           // own host name
	LayerNetNS      = "net-ns"           // own network namespace: no network unless granted
	LayerNetGrant   = "network-grant"    // can grant network: any (the host's), or a host list (loopback; the hosts through actions)
	LayerUserNS     = "user-ns"          // own user namespace: root inside maps to nothing outside
	LayerReadOnly   = "read-only-fs"     // service, toolchain and system files read-only; nothing of the host writable
	LayerScratch    = "private-scratch"  // a private writable /tmp per worker, removed with it
	LayerNoData     = "no-node-data"     // the node's data dir, keys and tokens are not in the worker's file system
	LayerNoEnv      = "no-env"           // a clean environment: nothing of the node's
	LayerUID        = "unprivileged-uid" // runs as an unprivileged uid with no capabilities
	LayerMemory     = "memory-cap"       // cgroup memory limit (v1 or v2); exceeding it is oom
	LayerPids       = "pids-cap"         // cgroup pids limit: a fork bomb stops there
	LayerCPU        = "cpu-cap"          // cgroup CPU quota
	LayerRlimits    = "rlimits"          // no core dumps, bounded open files
	LayerSeccomp    = "seccomp"          // system calls no service needs are refused
	LayerNoNewPrivs = "no-new-privs"     // set-uid binaries and file capabilities grant nothing
	LayerPdeathsig  = "pdeathsig"        // a worker dies with the node: no orphans
	LayerGroupKill  = "group-kill"       // timeout and stop kill the whole process group and PID namespace
	LayerTimeout    = "timeout"          // invocations are stopped at their deadline
)

// Driver is the process driver: it runs services written for Node.js,
// Python or as any executable speaking the runtime protocol, each worker in
// its own Linux sandbox. Safe for concurrent use; Close it when done.
type Driver struct {
	cfg    Config
	cfgErr error

	hostOnce sync.Once
	h        *host // what this host provides; see host

	mu       sync.Mutex
	tools    map[string]*lang.Toolchain // detected toolchains, by language
	disabled map[string]string          // language → why Test (or the node's certification) disabled it
	runtimes map[string]*lang.Language  // languages of runtimes registered by descriptor (AddRuntime)
	deps     map[sandbox.Deployment]struct{}
	closed   bool
}

// New returns a driver with cfg; zero fields take their defaults. New has no
// side effects: the host is probed and the work directory created on first
// use, and an invalid cfg is reported by Test and Deploy.
func New(cfg Config) *Driver {
	return &Driver{cfg: cfg.withDefaults(), cfgErr: cfg.Validate(), deps: map[sandbox.Deployment]struct{}{}}
}

// Name returns "process".
func (d *Driver) Name() string { return "process" }

// toolchains returns the detected toolchains, detecting them on first use.
func (d *Driver) toolchains(ctx context.Context) map[string]*lang.Toolchain {
	d.mu.Lock()
	tools := d.tools
	d.mu.Unlock()
	if tools != nil {
		return tools
	}
	tools = lang.Detect(ctx, lang.Tools{Node: d.cfg.Node, Python: d.cfg.Python, NPM: d.cfg.NPM})
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tools == nil {
		d.tools = tools
	}
	return d.tools
}

// toolchain returns the language named name and its toolchain, or an error
// saying why it cannot run.
func (d *Driver) toolchain(ctx context.Context, name string) (*lang.Language, *lang.Toolchain, error) {
	rl, rtc, isRuntime := d.runtime(ctx, name)
	tc, ok := d.toolchains(ctx)[name]
	if isRuntime {
		tc, ok = rtc, true
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: language %q (the process driver runs %s)", sandbox.ErrUnsupported, name, lang.Names())
	}
	d.mu.Lock()
	why := d.disabled[name]
	d.mu.Unlock()
	switch {
	case tc.Err != nil:
		return nil, nil, fmt.Errorf("%w: %v", sandbox.ErrUnsupported, tc.Err)
	case why != "" && ctx.Value(anyLanguage{}) == nil:
		return nil, nil, fmt.Errorf("%w: language %s disabled by the self-test: %s", sandbox.ErrUnsupported, name, why)
	}
	if isRuntime {
		return rl, tc, nil
	}
	return lang.Lookup(name), tc, nil
}

// Offer says what the driver runs here: the languages whose toolchain was
// found (and, after Test, passed the self-test) with their versions, both
// modes, and every isolation layer with whether it holds on this host.
// Notes name the cgroup hierarchies in use, the network semantics and each
// layer or language that is missing and why.
func (d *Driver) Offer() sandbox.Offer {
	h := d.host()
	tools := d.toolchains(context.Background())
	o := sandbox.Offer{
		Driver:    d.Name(),
		Languages: map[string]string{},
		Modes:     []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand},
		Isolation: h.isolation(),
	}
	d.mu.Lock()
	disabled := maps.Clone(d.disabled)
	d.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(tools)) {
		tc := tools[name]
		switch {
		case tc.Err != nil:
			o.Notes = append(o.Notes, fmt.Sprintf("language %s unavailable: %v", name, tc.Err))
		case disabled[name] != "":
			o.Notes = append(o.Notes, fmt.Sprintf("language %s disabled by the self-test: %s", name, disabled[name]))
		default:
			v := tc.Version
			if tc.InstallerVersion != "" {
				v += " (" + tc.InstallerVersion + ")"
			} else if lang.Lookup(name).Deps != nil {
				v += " (no package installer: services with dependencies cannot deploy)"
			}
			o.Languages[name] = v
		}
	}
	d.offerRuntimes(&o)
	o.Notes = append(o.Notes, h.notes...)
	o.Notes = append(o.Notes,
		"limits apply per worker; a server-mode pool holds limits.concurrency workers",
		"network any shares the host's network namespace; a host list grants no direct sockets (the worker gets an isolated namespace with loopback only) and reaches its hosts through http actions",
	)
	return o
}

// host is what this machine lets the driver do.
type host struct {
	jail  *jail.Host // builds the workers' sandboxes
	err   error      // why no worker can be isolated here at all
	iso   jail.Isolation
	notes []string
}

// host probes the machine on first use.
func (d *Driver) host() *host {
	d.hostOnce.Do(func() {
		j := jail.Probe(jail.Config{Dir: d.cfg.WorkDir, UID: d.cfg.UID, GID: d.cfg.GID, CgroupParent: d.cfg.CgroupParent, Logger: d.cfg.Logger})
		d.h = &host{jail: j, err: j.Err(), iso: j.Isolation(), notes: j.Notes()}
	})
	return d.h
}

// isolation says, for every layer, whether it holds on this host.
func (h *host) isolation() map[string]bool {
	ns, on := h.iso.Namespaces, h.iso.Basics
	return map[string]bool{
		LayerPIDNS:      ns,
		LayerMountNS:    ns,
		LayerIPCNS:      ns,
		LayerUTSNS:      ns,
		LayerNetNS:      ns,
		LayerNetGrant:   ns,
		LayerUserNS:     ns && h.iso.UserNS,
		LayerReadOnly:   ns,
		LayerScratch:    ns,
		LayerNoData:     ns,
		LayerNoEnv:      on,
		LayerUID:        ns,
		LayerMemory:     h.iso.Memory,
		LayerPids:       h.iso.Pids,
		LayerCPU:        h.iso.CPU,
		LayerRlimits:    on,
		LayerSeccomp:    h.iso.Seccomp,
		LayerNoNewPrivs: on,
		LayerPdeathsig:  on,
		LayerGroupKill:  ns,
		LayerTimeout:    on,
	}
}

// missingLayers lists the layers that do not hold and are not in
// Config.AllowMissing.
func (d *Driver) missingLayers() []string {
	var missing []string
	for layer, ok := range d.host().isolation() {
		if !ok && !slices.Contains(d.cfg.AllowMissing, layer) {
			missing = append(missing, layer)
		}
	}
	sort.Strings(missing)
	return missing
}

// checkLayers fails when a layer the operator did not allow to be missing
// does not hold.
func (d *Driver) checkLayers() error {
	if missing := d.missingLayers(); len(missing) > 0 {
		return fmt.Errorf("isolation layers missing on this host: %s (%s; list them in AllowMissing to run without them)",
			strings.Join(missing, ", "), strings.Join(d.host().notes, "; "))
	}
	return nil
}

// track registers a deployment so that Close stops it.
func (d *Driver) track(dep sandbox.Deployment) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	d.deps[dep] = struct{}{}
	return nil
}

func (d *Driver) forget(dep sandbox.Deployment) {
	d.mu.Lock()
	delete(d.deps, dep)
	d.mu.Unlock()
}

var errClosed = errors.New("process driver closed")

// Close stops every deployment still running, without a grace period.
// Safe to call more than once.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	deps := slices.Collect(maps.Keys(d.deps))
	d.mu.Unlock()
	now, cancel := context.WithCancel(context.Background())
	cancel()
	var errs []error
	for _, dep := range deps {
		if err := dep.Stop(now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ConformanceSpec returns the Spec, per mode, that `andromeda conformance
// DIR` deploys a third-party runtime with: its entry in dir, for lang,
// with room for the kit's cases (256 MiB, 10 s, 4 at once).
func ConformanceSpec(dir, lang, entry string) func(mode sandbox.Mode) sandbox.Spec {
	return func(mode sandbox.Mode) sandbox.Spec {
		return sandbox.Spec{Service: "conformance", Dir: dir, Entry: entry, Language: lang, Mode: mode,
			Limits: sandbox.Limits{Memory: 256 << 20, Timeout: 10 * time.Second, Concurrency: 4}}
	}
}
