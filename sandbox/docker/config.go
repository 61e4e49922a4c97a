package docker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// Defaults for the zero fields of Config.
const (
	DefaultPullMaxSize = 2 << 30
	DefaultPullTimeout = 10 * time.Minute
	DefaultUser        = "65534:65534"
	DefaultScratch     = 64 << 20
	DefaultKillWait    = 5 * time.Second
)

// Config configures the docker driver. The zero value is valid: every zero
// field takes its default.
type Config struct {
	// Host is the engine's address: unix:///path/to/docker.sock or
	// tcp://host:port. Empty: DOCKER_HOST, else the platform's default
	// socket (unix:///var/run/docker.sock).
	Host string
	// TLSCA, TLSCert and TLSKey are the files of the client's TLS for a
	// tcp Host: the CA that signed the engine's certificate, and the
	// client's certificate and key. All empty: no TLS.
	TLSCA, TLSCert, TLSKey string
	// Node is the node's id. Every container and image the driver makes is
	// labelled andromeda.node=<Node>; Reap removes that node's leftovers.
	// Default: the host name.
	Node string
	// Transport is how the node talks to a container's worker:
	// TransportRelay, a unix socket per container with the node's binary
	// as the container's entrypoint (it must call MaybeRelay; the engine
	// must be local), or TransportAttach, the engine's attached streams
	// (slower: every message goes through the engine). Empty: relay when
	// it is available, else attach.
	Transport string
	// Images maps a language (node, python, exec) to the runtime image its
	// archive services run in: a reference pinned by digest
	// (name@sha256:...), an image ID (sha256:...) or a local tag. A
	// language without an image is not offered.
	Images map[string]string
	// Registries are the reference prefixes ("registry.example.com/team/")
	// images may be pulled from when they are not present locally. Empty:
	// no pulls, local images only.
	Registries []string
	// PullMaxSize bounds the bytes a pull may download; PullTimeout how
	// long it may take. Defaults DefaultPullMaxSize (2 GiB) and
	// DefaultPullTimeout (10 min).
	PullMaxSize int64
	PullTimeout time.Duration
	// User is the user:group new containers run as, numeric. Default
	// DefaultUser ("65534:65534", nobody); root (uid 0) is refused.
	User string
	// Scratch is the size of each container's writable /tmp (a tmpfs
	// whose pages count against its memory limit); the rest of its root
	// file system is read-only. Default DefaultScratch (64 MiB).
	Scratch int64
	// Process holds the protocol and pool settings, as the process driver
	// has them: Memory, Pids and CPU (a container's limits where a spec
	// leaves them zero), Timeout, Concurrency, MaxLine, MaxLog,
	// CancelGrace, StartTimeout, Backoff, MaxBackoff and UnhealthyAfter;
	// KillWait, also how long a stop's engine calls (kills, removals) may
	// run past its context, defaults to DefaultKillWait (5 s) here: an
	// engine busy with other containers takes seconds to kill and remove
	// one.
	// Its sandbox fields (WorkDir but for the shims, toolchains, cgroups)
	// do not apply. WorkDir is where the language shims are written
	// (runtimes/), shown read-only to containers; default as the process
	// driver's.
	Process process.Config
	// Logger receives the driver's events (pulls, the self-test, reaped
	// containers). Default: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the configuration New uses for zero fields.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	pc := process.DefaultConfig()
	pc.WorkDir = filepath.Join(os.TempDir(), "andromeda-docker-"+strconv.Itoa(os.Getuid()))
	return Config{
		Node:        host,
		PullMaxSize: DefaultPullMaxSize,
		PullTimeout: DefaultPullTimeout,
		User:        DefaultUser,
		Scratch:     DefaultScratch,
		Process:     pc,
		Logger:      slog.Default(),
	}
}

// Validate reports the fields of c that are out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Host != "" && !strings.HasPrefix(c.Host, "unix://") && !strings.HasPrefix(c.Host, "tcp://") {
		errs = append(errs, fmt.Errorf("host %q: must be unix:///path or tcp://host:port", c.Host))
	}
	if c.Transport != "" && c.Transport != TransportRelay && c.Transport != TransportAttach {
		errs = append(errs, fmt.Errorf("transport %q: must be %s or %s (empty: relay when available)", c.Transport, TransportRelay, TransportAttach))
	}
	tls := []string{c.TLSCA, c.TLSCert, c.TLSKey}
	if slices.ContainsFunc(tls, func(s string) bool { return s != "" }) {
		if slices.Contains(tls, "") {
			errs = append(errs, errors.New("tls_ca, tls_cert, tls_key: set all three or none"))
		}
		if !strings.HasPrefix(c.Host, "tcp://") {
			errs = append(errs, fmt.Errorf("tls: only for a tcp host, got host %q", c.Host))
		}
	}
	for language, img := range c.Images {
		if l := lang.Lookup(language); l == nil {
			errs = append(errs, fmt.Errorf("images[%q]: unknown language (%s)", language, lang.Names()))
		}
		if img == "" {
			errs = append(errs, fmt.Errorf("images[%q]: must not be empty", language))
		}
	}
	for i, r := range c.Registries {
		if r == "" || strings.ContainsAny(r, " @") {
			errs = append(errs, fmt.Errorf("registries[%d] %q: must be a reference prefix like registry.example.com/team/", i, r))
		}
	}
	if c.PullMaxSize < 0 {
		errs = append(errs, fmt.Errorf("pull_max_size: must not be negative, got %d", c.PullMaxSize))
	}
	if c.PullTimeout < 0 {
		errs = append(errs, fmt.Errorf("pull_timeout: must not be negative, got %v", c.PullTimeout))
	}
	if c.Scratch < 0 {
		errs = append(errs, fmt.Errorf("scratch: must not be negative, got %d", c.Scratch))
	}
	if c.User != "" {
		if err := checkUser(c.User); err != nil {
			errs = append(errs, fmt.Errorf("user %q: %w", c.User, err))
		}
	}
	if err := c.Process.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("process: %w", err))
	}
	return errors.Join(errs...)
}

// checkUser checks a container user: uid:gid, both numeric, not root.
func checkUser(u string) error {
	uid, gid, ok := strings.Cut(u, ":")
	if !ok {
		return errors.New("must be uid:gid, numeric")
	}
	for _, s := range []string{uid, gid} {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return errors.New("must be uid:gid, numeric")
		}
		if n == 0 {
			return errors.New("must not be root (0): containers run unprivileged")
		}
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Node != "" {
		d.Node = c.Node
	}
	d.Host, d.TLSCA, d.TLSCert, d.TLSKey = c.Host, c.TLSCA, c.TLSCert, c.TLSKey
	d.Transport = c.Transport
	d.Images = c.Images
	d.Registries = c.Registries
	if c.PullMaxSize > 0 {
		d.PullMaxSize = c.PullMaxSize
	}
	if c.PullTimeout > 0 {
		d.PullTimeout = c.PullTimeout
	}
	if c.User != "" {
		d.User = c.User
	}
	if c.Scratch > 0 {
		d.Scratch = c.Scratch
	}
	work := d.Process.WorkDir
	d.Process = c.Process
	if d.Process.WorkDir == "" {
		d.Process.WorkDir = work
	}
	pd := process.DefaultConfig()
	if d.Process.Memory <= 0 {
		d.Process.Memory = pd.Memory
	}
	if d.Process.Pids <= 0 {
		d.Process.Pids = pd.Pids
	}
	if d.Process.Timeout <= 0 {
		d.Process.Timeout = pd.Timeout
	}
	if d.Process.Concurrency <= 0 {
		d.Process.Concurrency = pd.Concurrency
	}
	if d.Process.StartTimeout <= 0 {
		d.Process.StartTimeout = pd.StartTimeout
	}
	if d.Process.CancelGrace <= 0 {
		d.Process.CancelGrace = pd.CancelGrace
	}
	if d.Process.KillWait <= 0 {
		d.Process.KillWait = DefaultKillWait
	}
	if c.Logger != nil {
		d.Logger = c.Logger
	}
	if d.Process.Logger == nil {
		d.Process.Logger = d.Logger
	}
	return d
}
