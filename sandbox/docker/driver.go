package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// The labels on every container and image the driver makes.
const (
	LabelNode     = "andromeda.node"     // Config.Node
	LabelService  = "andromeda.service"  // Spec.Service
	LabelVersion  = "andromeda.version"  // Spec.Version
	LabelRun      = "andromeda.run"      // command mode: the run the container ran
	LabelRole     = "andromeda.role"     // RoleWorker, RoleSelfTest or RolePlacement
	LabelInstance = "andromeda.instance" // the Driver value that made it (one per node start)
)

// The values of LabelRole.
const (
	RoleWorker    = "worker"    // a service's worker container
	RoleSelfTest  = "selftest"  // the self-test's container and image
	RolePlacement = "placement" // made by placement into existing containers
)

// AnyLanguage is the offer's language for image services: any image whose
// command speaks the runtime protocol.
const AnyLanguage = "any"

// The isolation layers of Offer().Isolation; most are the process
// driver's layers, with the same meaning for a container.
const (
	LayerPIDNS      = "pid-ns"           // the container's own PID namespace
	LayerMountNS    = "mount-ns"         // its own mount namespace on the image's root
	LayerIPCNS      = "ipc-ns"           // a private IPC namespace
	LayerUTSNS      = "uts-ns"           // its own host name ("sandbox")
	LayerNetNS      = "net-ns"           // its own network namespace: none, or the default bridge
	LayerNetGrant   = "network-grant"    // can grant network any (a host list is refused)
	LayerUserNS     = "user-ns"          // the engine remaps users (userns-remap)
	LayerReadOnly   = "read-only-fs"     // read-only root; service, shim and relay read-only
	LayerScratch    = "private-scratch"  // a tmpfs /tmp of Config.Scratch bytes per container
	LayerNoData     = "no-node-data"     // nothing of the node's files but what is mounted for it
	LayerNoEnv      = "no-env"           // the image's environment and HOME, TMPDIR, LANG only
	LayerUID        = "unprivileged-uid" // Config.User, not root, no capabilities
	LayerMemory     = "memory-cap"       // memory limit without swap: exceeding it is oom
	LayerPids       = "pids-cap"         // pids limit
	LayerCPU        = "cpu-cap"          // CPU quota (NanoCPUs)
	LayerRlimits    = "rlimits"          // no core dumps, bounded open files
	LayerSeccomp    = "seccomp"          // the engine's default seccomp profile
	LayerNoNewPrivs = "no-new-privs"     // no-new-privileges
	LayerPdeathsig  = "pdeathsig"        // containers die with the node: false (Reap removes them)
	LayerGroupKill  = "group-kill"       // a kill ends every process of the container
	LayerTimeout    = "timeout"          // invocations are stopped at their deadline
)

var (
	// ErrEngine wraps the errors of an engine that cannot be reached or
	// does not do what the driver needs.
	ErrEngine = errors.New("docker engine")
	// ErrImage wraps the reasons an image cannot be used: missing, not
	// pinned, from a registry the configuration does not list.
	ErrImage = errors.New("image refused")

	errClosed = errors.New("docker driver closed")
)

var _ sandbox.Driver = (*Driver)(nil)

// Driver is the docker driver: it runs services in containers of a Docker
// Engine, as workers speaking the runtime protocol (the process driver's
// pool, restarts and protocol client). Safe for concurrent use; Close it
// when done.
type Driver struct {
	cfg      Config
	cfgErr   error
	instance string // LabelInstance of this Driver's containers

	cliOnce sync.Once
	cli     *client.Client
	cliErr  error

	relayOnce  sync.Once
	relayFiles *relayFiles
	relayErr   error

	mu       sync.Mutex
	self     *SelfTest // the last self-test that passed
	disabled string    // why the last self-test failed
	names    map[string]struct{}
	deps     map[*deployment]struct{}
	closed   bool
	bg       sync.WaitGroup // removals of containers whose start was cut short
	cutting  map[string]int // per container name, the background work of a start cut short
}

// New returns a driver with cfg; zero fields take their defaults. New has no
// side effects: the engine is reached on first use, and an invalid cfg is
// reported by Test and Deploy.
func New(cfg Config) *Driver {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Driver{
		cfg:      cfg.withDefaults(),
		cfgErr:   cfg.Validate(),
		instance: hex.EncodeToString(b[:]),
		names:    map[string]struct{}{},
		cutting:  map[string]int{},
		deps:     map[*deployment]struct{}{},
	}
}

// Name returns "docker".
func (d *Driver) Name() string { return "docker" }

// client returns the engine client, made on first use.
func (d *Driver) client() (*client.Client, error) {
	d.cliOnce.Do(func() {
		opts := []client.Opt{client.WithAPIVersionNegotiation()}
		if d.cfg.Host != "" {
			opts = append(opts, client.WithHost(d.cfg.Host))
		} else {
			opts = append(opts, client.WithHostFromEnv())
		}
		if d.cfg.TLSCA != "" {
			opts = append(opts, client.WithTLSClientConfig(d.cfg.TLSCA, d.cfg.TLSCert, d.cfg.TLSKey))
		}
		d.cli, d.cliErr = client.New(opts...)
		if d.cliErr != nil {
			d.cliErr = fmt.Errorf("%w: client for %s: %v", ErrEngine, d.host(), d.cliErr)
		}
	})
	return d.cli, d.cliErr
}

// host is the engine's address as the configuration and environment say.
func (d *Driver) host() string {
	if d.cfg.Host != "" {
		return d.cfg.Host
	}
	if cli := d.cli; cli != nil {
		return cli.DaemonHost()
	}
	return client.DefaultDockerHost
}

// ready checks what every operation needs: a valid configuration, an open
// driver and a client.
func (d *Driver) ready() (*client.Client, error) {
	if d.cfgErr != nil {
		return nil, fmt.Errorf("docker config: %w", d.cfgErr)
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	return d.client()
}

// Test is the self-test at node start (see SelfTest). It fails, disabling
// the driver, when the configuration is invalid, the engine cannot be
// reached, its API is older than the client supports, or a container
// cannot be created and removed; the error says which and why.
func (d *Driver) Test(ctx context.Context) error {
	st, err := d.SelfTest(ctx)
	d.mu.Lock()
	if err != nil {
		d.disabled = err.Error()
	} else {
		d.disabled, d.self = "", &st
	}
	d.mu.Unlock()
	if err != nil {
		d.cfg.Logger.Warn("docker driver: self-test failed", "host", d.host(), "reason", err.Error())
		return fmt.Errorf("test docker: %w", err)
	}
	d.cfg.Logger.Info("docker driver: ready", "host", st.Host, "engine", st.Version, "api", st.APIVersion, "storage", st.StorageDriver, "cgroup", st.CgroupVersion, "transport", st.Transport)
	return nil
}

// Offer says what the driver runs here: image services ("any": an image
// whose command speaks the runtime protocol) and the archive languages
// Config.Images names, in both modes, with the isolation layers a
// container gets on this engine. Before a Test passed, the layers that
// depend on the engine (seccomp, user namespaces) show false.
func (d *Driver) Offer() sandbox.Offer {
	d.mu.Lock()
	st, disabled := d.self, d.disabled
	d.mu.Unlock()
	o := sandbox.Offer{
		Driver:    d.Name(),
		Languages: map[string]string{AnyLanguage: "image services: an image pinned by digest or ID whose command speaks the runtime protocol"},
		Modes:     []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand},
		Isolation: map[string]bool{
			LayerPIDNS: true, LayerMountNS: true, LayerIPCNS: true, LayerUTSNS: true,
			LayerNetNS: true, LayerNetGrant: true, LayerUserNS: false,
			LayerReadOnly: true, LayerScratch: true, LayerNoData: true, LayerNoEnv: true,
			LayerUID: true, LayerMemory: true, LayerPids: true, LayerCPU: true,
			LayerRlimits: true, LayerSeccomp: false, LayerNoNewPrivs: true,
			LayerPdeathsig: false, LayerGroupKill: true, LayerTimeout: true,
		},
	}
	for _, name := range slices.Sorted(maps.Keys(d.cfg.Images)) {
		if lang.Lookup(name) != nil {
			o.Languages[name] = "runtime image " + d.cfg.Images[name]
		}
	}
	if st != nil {
		o.Isolation[LayerSeccomp] = st.Seccomp
		o.Isolation[LayerUserNS] = st.UserNS
		o.Notes = append(o.Notes, fmt.Sprintf("docker engine %s (API %s) at %s, storage driver %s, cgroup %s (%s)", st.Version, st.APIVersion, st.Host, st.StorageDriver, st.CgroupVersion, st.CgroupDriver))
		if st.Transport == TransportAttach {
			note := "transport attach: every protocol message goes through the engine (slower than the relay)"
			if st.TransportWhy != "" {
				note += ": " + st.TransportWhy
			}
			o.Notes = append(o.Notes, note)
		}
		if !st.Seccomp {
			o.Notes = append(o.Notes, "seccomp: the engine runs containers without a seccomp profile")
		}
	}
	if disabled != "" {
		o.Notes = append(o.Notes, "disabled by the self-test: "+disabled)
	}
	if st == nil || !st.UserNS {
		o.Notes = append(o.Notes, "user-ns: the engine does not remap users (userns-remap); containers run as Config.User on the host's uid range, without capabilities")
	}
	o.Notes = append(o.Notes,
		"pdeathsig: containers outlive a node that crashes; the node removes them at its next start (Reap)",
		"limits apply per container; a server-mode pool holds limits.concurrency containers",
		"network none is a container without network; any is the engine's default bridge; a host list is refused (no per-service egress rules yet)",
		"archive services with dependencies to install (package.json dependencies, requirements.txt) are refused",
	)
	return o
}

// Close stops every deployment still running, without a grace period, and
// removes their containers. Safe to call more than once.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	deps := slices.Collect(maps.Keys(d.deps))
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := []error{d.closePlaced()} // existing.go: services placed into existing containers
	for _, dep := range deps {
		stopCtx, c := context.WithCancel(ctx)
		c() // no grace
		if err := dep.Stop(stopCtx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	d.bg.Wait()
	if d.cli != nil {
		// Raw workers and anything a stop left behind.
		if _, err := d.removeWhere(ctx, func(labels map[string]string, name string) bool {
			return labels[LabelInstance] == d.instance
		}); err != nil {
			errs = append(errs, err)
		}
		d.cli.Close()
	}
	return errors.Join(errs...)
}

// inBackground runs fn on its own goroutine, counted so that Close waits
// for it; once the driver is closed it runs fn before returning.
func (d *Driver) inBackground(fn func()) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		fn()
		return
	}
	d.bg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.bg.Done()
		fn()
	}()
}

// cutShort runs fn, the background work of container name's start cut
// short (its create still under way, then its removal), with
// inBackground; until it returns, cutting(name) says so.
func (d *Driver) cutShort(name string, fn func()) {
	d.mu.Lock()
	d.cutting[name]++
	d.mu.Unlock()
	d.inBackground(func() {
		defer func() {
			d.mu.Lock()
			if d.cutting[name]--; d.cutting[name] <= 0 {
				delete(d.cutting, name)
			}
			d.mu.Unlock()
		}()
		fn()
	})
}

// waitCut waits until no background work of a start cut short is under
// way for container name, or ctx ends.
func (d *Driver) waitCut(ctx context.Context, name string) error {
	for {
		d.mu.Lock()
		n := d.cutting[name]
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s: its start, cut short, is still under way: %w", name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// track registers dep; it fails once the driver is closed.
func (d *Driver) track(dep *deployment) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	d.deps[dep] = struct{}{}
	return nil
}

func (d *Driver) untrack(dep *deployment) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.deps, dep)
}

// newName returns a new container name for service, registered as this
// driver's until forget: Reap keeps it.
func (d *Driver) newName(service string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	s := badName.ReplaceAllString(strings.ToLower(service), "-")
	if len(s) > 40 {
		s = s[:40]
	}
	name := "andromeda-" + strings.Trim(s, "-.") + "-" + hex.EncodeToString(b[:])
	d.mu.Lock()
	d.names[name] = struct{}{}
	d.mu.Unlock()
	return name
}

// forget unregisters a container name.
func (d *Driver) forget(name string) {
	d.mu.Lock()
	delete(d.names, name)
	d.mu.Unlock()
}

// pingOptions negotiate the API version with the engine.
var pingOptions = client.PingOptions{NegotiateAPIVersion: true}

// badName matches what a container name may not hold.
var badName = regexp.MustCompile(`[^a-z0-9_.-]+`)
