package process

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
	"github.com/andromeda-runner/andromeda/sandbox/process/deps"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// Defaults for the zero fields of Config.
const (
	DefaultMemory         = 256 << 20
	DefaultPids           = 128
	DefaultTimeout        = 30 * time.Second
	DefaultConcurrency    = 4
	DefaultScratch        = 64 << 20
	DefaultFiles          = 1024
	DefaultMaxLog         = 8 << 10
	DefaultCancelGrace    = 250 * time.Millisecond
	DefaultKillWait       = time.Second
	DefaultStartTimeout   = 15 * time.Second
	DefaultBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultUnhealthyAfter = 3
	DefaultUID            = 65534
	DefaultCgroupParent   = "andromeda"
	DefaultInstallTimeout = 5 * time.Minute
	DefaultInstallMemory  = 1 << 30
)

// Config configures a Driver. The zero value is valid: every zero field
// takes its default.
type Config struct {
	// WorkDir holds the driver's files: the language shims (runtimes/),
	// each service's dependency directory (deps/<service>/) and the empty
	// skeletons sandboxes are mounted on (roots/). It is created if
	// missing, must be on a local file system and private to the node (the
	// node's data dir is the right parent: only the subdirectories above are
	// ever shown to a sandbox, read-only). Default: a directory named
	// andromeda-process-<uid> in os.TempDir().
	WorkDir string
	// Node, Python and NPM name the toolchains: a path, or a name looked up
	// on PATH. Defaults "node", "python3" and "npm". pip is run as
	// Python -m pip.
	Node, Python, NPM string

	// Memory, Pids and CPU are the limits of a worker whose Limits leave
	// them zero: DefaultMemory (256 MiB), DefaultPids (128 processes and
	// threads) and no CPU cap (0). Limits apply to each worker (a process
	// and everything it starts), like the wasm driver's limits apply to
	// each instance.
	Memory int64
	Pids   int
	CPU    float64
	// Timeout bounds an invocation whose deployment has no Limits.Timeout.
	// Default DefaultTimeout (30 s).
	Timeout time.Duration
	// Concurrency is the size of a server-mode pool when
	// Limits.Concurrency is zero. Default DefaultConcurrency (4).
	Concurrency int
	// Scratch is the size of each worker's private writable directory
	// (/tmp, a tmpfs whose pages count against the worker's memory).
	// Default DefaultScratch (64 MiB).
	Scratch int64
	// Files is the worker's limit on open files (RLIMIT_NOFILE). Default
	// DefaultFiles (1024).
	Files int
	// MaxLine is the longest protocol line either side may send; it bounds
	// an invocation's input and output. Default worker.DefaultMaxLine (8 MiB).
	MaxLine int
	// MaxLog is how much of a worker's standard error is kept for
	// Exit.Detail when it crashes (its last MaxLog bytes). Default
	// DefaultMaxLog (8 KiB).
	MaxLog int
	// CancelGrace is how long an invocation may take to end after its
	// cancel message (caller gone, timeout) before the driver kills its
	// worker's whole process group. Default DefaultCancelGrace (250 ms).
	CancelGrace time.Duration
	// ThrashAfter is how long a worker may thrash at its memory limit
	// (its anonymous memory filling the limit while the kernel evicts its
	// code and it reads it back, instead of killing it) before the driver
	// kills it and tells it as out of memory. Default
	// jail.DefaultThrashAfter (2 s); negative: never.
	ThrashAfter time.Duration
	// KillWait is how long Stop waits, once its context is done, for the
	// workers it killed to end (and, when the workers' runner is another
	// driver, to be released) before it gives up on them and returns
	// naming them. Default DefaultKillWait (1 s).
	KillWait time.Duration
	// StartTimeout bounds a worker's start: sandbox set-up, interpreter
	// start and module load, until its ready message. Default
	// DefaultStartTimeout (15 s).
	StartTimeout time.Duration
	// Backoff and MaxBackoff bound the delay before a crashed server-mode
	// worker is restarted: Backoff doubles with every consecutive crash up
	// to MaxBackoff, with ±50 % jitter. Defaults DefaultBackoff (100 ms) and
	// DefaultMaxBackoff (30 s).
	Backoff, MaxBackoff time.Duration
	// UnhealthyAfter is the number of consecutive worker crashes after
	// which a deployment reports itself unhealthy and fails invocations at
	// once while its workers wait to restart. Default
	// DefaultUnhealthyAfter (3).
	UnhealthyAfter int
	// UID and GID are the host user and group workers run as when the node
	// runs as root (inside their user namespace they are uid and gid 1000).
	// Default DefaultUID (65534, nobody; set a dedicated uid that owns no
	// files). A node that is not root runs workers as its own uid, mapped
	// the same way.
	UID, GID int
	// CgroupParent is the cgroup under which each worker gets its own
	// cgroup, in every hierarchy the driver uses (cgroup v1 controllers and
	// the v2 unified hierarchy). A relative path is under the node's own
	// cgroup, an absolute one under the hierarchy's root. With cgroup v2 the
	// parent must be a cgroup where the memory, pids and cpu controllers can
	// be enabled for children (the root, or a delegated subtree without
	// processes of its own). Default DefaultCgroupParent ("andromeda").
	CgroupParent string
	// Registries maps a language ("node", "python") to where its
	// dependencies are installed from: a registry URL (npm's --registry,
	// pip's --index-url), or the absolute path of a local directory (npm
	// packages by path with --offline; wheels for pip's --find-links with
	// --no-index). An install runs in a network namespace of its own with
	// only loopback; for a URL it reaches the URL's host and port, and
	// nothing else, through an egress proxy in the node (the registry's
	// package files must be served from that host and port too). Empty:
	// the toolchain's default registry (registry.npmjs.org:443; pypi.org:443
	// and files.pythonhosted.org:443). This is the policy's `registries`
	// setting.
	Registries map[string]string
	// AllowAnyDepSource lets a service's requirements.txt, package.json and
	// package-lock.json, and `deps add`, name dependencies by local path,
	// URL or VCS (./pkg, file:, git+https://…, -e), and requirements.txt
	// carry installer options (--index-url, --find-links, …). Default false:
	// only registry names with version specifiers, since pip builds a local
	// project or a checkout by running the project's own build backend, so
	// allowing them runs the service's code at install time (still inside
	// the install sandbox, whose only way out is the registries above).
	// pip never builds registry packages from source either way
	// (--only-binary=:all:), npm never runs scripts (--ignore-scripts),
	// and -r and -c includes never reach outside the service directory.
	// This is a policy setting for operators who trust their submitters.
	AllowAnyDepSource bool
	// InstallTimeout and InstallMemory bound a dependency install (npm or
	// pip in a sandbox). Defaults DefaultInstallTimeout (5 min) and
	// DefaultInstallMemory (1 GiB).
	InstallTimeout time.Duration
	InstallMemory  int64
	// AllowMissing names isolation layers (the keys of Offer().Isolation)
	// the operator accepts missing on this host. Test fails, and the
	// driver is disabled, when any other layer does not hold: a host
	// without cgroups or namespaces does not silently run services with
	// less isolation than the offer promises elsewhere.
	AllowMissing []string
	// Logger receives the driver's own events (languages disabled at Test,
	// worker crashes and restarts). Default: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the configuration New uses for zero fields.
func DefaultConfig() Config {
	return Config{
		WorkDir:        filepath.Join(os.TempDir(), "andromeda-process-"+strconv.Itoa(os.Getuid())),
		Node:           "node",
		Python:         "python3",
		NPM:            "npm",
		Memory:         DefaultMemory,
		Pids:           DefaultPids,
		Timeout:        DefaultTimeout,
		Concurrency:    DefaultConcurrency,
		Scratch:        DefaultScratch,
		Files:          DefaultFiles,
		MaxLine:        worker.DefaultMaxLine,
		MaxLog:         DefaultMaxLog,
		CancelGrace:    DefaultCancelGrace,
		ThrashAfter:    jail.DefaultThrashAfter,
		KillWait:       DefaultKillWait,
		StartTimeout:   DefaultStartTimeout,
		Backoff:        DefaultBackoff,
		MaxBackoff:     DefaultMaxBackoff,
		UnhealthyAfter: DefaultUnhealthyAfter,
		UID:            DefaultUID,
		GID:            DefaultUID,
		CgroupParent:   DefaultCgroupParent,
		InstallTimeout: DefaultInstallTimeout,
		InstallMemory:  DefaultInstallMemory,
		Logger:         slog.Default(),
	}
}

// Validate reports the fields of c that are out of range.
func (c Config) Validate() error {
	var errs []error
	neg := func(name string, bad bool, v any) {
		if bad {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %v", name, v))
		}
	}
	neg("memory", c.Memory < 0, c.Memory)
	neg("pids", c.Pids < 0, c.Pids)
	neg("cpu", c.CPU < 0, c.CPU)
	neg("timeout", c.Timeout < 0, c.Timeout)
	neg("concurrency", c.Concurrency < 0, c.Concurrency)
	neg("scratch", c.Scratch < 0, c.Scratch)
	neg("files", c.Files < 0, c.Files)
	neg("max_line", c.MaxLine < 0, c.MaxLine)
	neg("max_log", c.MaxLog < 0, c.MaxLog)
	neg("cancel_grace", c.CancelGrace < 0, c.CancelGrace)
	neg("start_timeout", c.StartTimeout < 0, c.StartTimeout)
	neg("backoff", c.Backoff < 0, c.Backoff)
	neg("max_backoff", c.MaxBackoff < 0, c.MaxBackoff)
	neg("unhealthy_after", c.UnhealthyAfter < 0, c.UnhealthyAfter)
	neg("uid", c.UID < 0, c.UID)
	neg("gid", c.GID < 0, c.GID)
	neg("install_timeout", c.InstallTimeout < 0, c.InstallTimeout)
	neg("install_memory", c.InstallMemory < 0, c.InstallMemory)
	if c.MaxLine > 0 && c.MaxLine < 64<<10 {
		errs = append(errs, fmt.Errorf("max_line: must be at least 64 KiB, got %d bytes", c.MaxLine))
	}
	if c.WorkDir != "" && !filepath.IsAbs(c.WorkDir) {
		errs = append(errs, fmt.Errorf("work_dir: must be an absolute path, got %q", c.WorkDir))
	}
	for name, reg := range c.Registries {
		if l := lang.Lookup(name); l == nil || l.Deps == nil {
			errs = append(errs, fmt.Errorf("registries[%q]: unknown language (%s)", name, lang.WithDeps()))
		}
		if reg == "" {
			errs = append(errs, fmt.Errorf("registries[%q]: must not be empty", name))
		} else if _, err := deps.Hosts(reg); err != nil {
			errs = append(errs, fmt.Errorf("registries[%q]: must be an http or https URL or an absolute directory: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&d.WorkDir, c.WorkDir)
	set(&d.Node, c.Node)
	set(&d.Python, c.Python)
	set(&d.NPM, c.NPM)
	set(&d.CgroupParent, c.CgroupParent)
	if c.Memory > 0 {
		d.Memory = c.Memory
	}
	if c.Pids > 0 {
		d.Pids = c.Pids
	}
	d.CPU = c.CPU
	if c.Timeout > 0 {
		d.Timeout = c.Timeout
	}
	if c.Concurrency > 0 {
		d.Concurrency = c.Concurrency
	}
	if c.Scratch > 0 {
		d.Scratch = c.Scratch
	}
	if c.Files > 0 {
		d.Files = c.Files
	}
	if c.MaxLine > 0 {
		d.MaxLine = c.MaxLine
	}
	if c.MaxLog > 0 {
		d.MaxLog = c.MaxLog
	}
	if c.CancelGrace > 0 {
		d.CancelGrace = c.CancelGrace
	}
	if c.ThrashAfter != 0 {
		d.ThrashAfter = c.ThrashAfter
	}
	if c.KillWait > 0 {
		d.KillWait = c.KillWait
	}
	if c.StartTimeout > 0 {
		d.StartTimeout = c.StartTimeout
	}
	if c.Backoff > 0 {
		d.Backoff = c.Backoff
	}
	if c.MaxBackoff > 0 {
		d.MaxBackoff = c.MaxBackoff
	}
	if c.UnhealthyAfter > 0 {
		d.UnhealthyAfter = c.UnhealthyAfter
	}
	if c.UID > 0 {
		d.UID = c.UID
	}
	if c.GID > 0 {
		d.GID = c.GID
	}
	if c.InstallTimeout > 0 {
		d.InstallTimeout = c.InstallTimeout
	}
	if c.InstallMemory > 0 {
		d.InstallMemory = c.InstallMemory
	}
	d.Registries = c.Registries
	d.AllowAnyDepSource = c.AllowAnyDepSource
	d.AllowMissing = c.AllowMissing
	if c.Logger != nil {
		d.Logger = c.Logger
	}
	return d
}
