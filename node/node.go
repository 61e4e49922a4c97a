// Package node is the composition root: it reads the node's Config, opens the
// bus and the store, tests the drivers, restores and deploys the registered
// services, schedules their triggers, runs invocations and records them, and
// serves the HTTP API. It is the only package that knows all the others.
package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/runtimes/browser"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/wasm"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Version is the node's version, set at build time with -ldflags.
var Version = "0.1.0-dev"

// Log keys: every log line about a run carries service and run.
const (
	logService = "service"
	logRun     = "run"
	logTrigger = "trigger"
	logOutcome = "outcome"
	logErr     = "err"
)

// TokenFile is the operator token's file name inside the data directory.
const TokenFile = "operator.token"

// Node is one running andromeda node. Create it with New, then Start; Close
// stops everything in reverse order.
type Node struct {
	cfg    Config
	log    *slog.Logger
	limits ceilings

	prewarms atomic.Uint64 // ticks prepared ahead (prewarm.go)
	// stopping refuses new runs once Close began (shutdown.go); shutdown
	// is what the stop found, for Stopped.
	stopping atomic.Bool
	shutdown Shutdown
	// flowsMu serialises the applications and removals of flows, so that
	// a check and the write after it see the same record (flows.go).
	flowsMu sync.Mutex
	flows   flowEngine // the running flows (flowrun.go)
	// modCalls are the module runs of other nodes' flows running here,
	// flowTurns this node's view of flows no node holds (cluster_flow.go).
	modCalls      moduleCalls
	flowTurns     flowTurns
	flowHooksSeen clusterFlowHooks
	browser       *browser.Hub // the browser runtime's hub; nil when not served (browser.go)

	revocations revocations // of delegations, by id (trust.go)
	regIndex    regIndex    // the registry's services and targets, for admission (regindex.go)

	bus   *bus.Bus
	reg   *registry   // the node registry: this node's heartbeat, the others'
	place *placements // where the cluster runs each service; nil alone
	// hooksSeen: the webhook paths of services on the other nodes.
	hooksSeen clusterHooks
	store     *store.Store
	sched     *trigger.Scheduler
	ticks     *tickBook // the last tick evaluated per cron trigger (catchup.go)
	events    *eventBus
	exec      *executions // the ledger's executions (execute.go)
	metrics   *nodeMetrics
	drivers   map[string]*driverState
	http      *http.Server
	ln        net.Listener

	operatorHash [32]byte
	natsAuth     *natsAuth // NATS client credentials and the publisher key (natsauth.go)
	key          attest.PrivateKey
	pol          atomic.Pointer[policy.Compiled]
	client       *http.Client // set by SetHTTPClient; else srcClient
	srcClient    *http.Client // sources.ca_file's trust, for source fetches
	process      *process.Driver
	started      time.Time
	ready        bool
	holds        map[*string]struct{} // HoldReady's reasons, not ready while any is held
	testing      sync.WaitGroup       // the drivers' self-tests at start (addDriver)

	ctx    context.Context // the node's lifetime; cancelled by Close
	cancel context.CancelFunc
	// advertCtx is the advertisements' (forward.go): cancelled, and waited
	// for, first thing in Close, before the store they record to closes.
	advertCtx  context.Context
	advertStop context.CancelFunc
	adverts    sync.WaitGroup

	mu       sync.RWMutex
	services map[string]*deployed
	submitMu sync.Mutex // serialises submissions and removals
	life     lifecycle  // each service's lifecycle lock (lifecycle.go)

	admission admissionQueue // new services waiting for capacity (queue.go)

	closeOnce  sync.Once
	undo       []func() error
	runs       sync.WaitGroup
	unrecorded *unrecorded // runs the store refused, retried until stored
	inflight   inflight    // runs in flight, by id, with their kill switches (running.go)
	secrets    *secretStore
	hooksLn    net.Listener // the webhooks' own listener (http.hooks_listen), or nil
	gate       *workGate    // refuses new work while the disk is nearly full or the store cannot write
	watch      *watcher     // the watch and logs streams' publisher (watch.go); nil before Start

	testDrivers  []sandbox.Driver                          // replace drivers by name; tests only
	saveFault    atomic.Pointer[func(store.Run) error]     // a store refusing runs; tests only
	flowRunFault atomic.Pointer[func(store.FlowRun) error] // a store refusing flow runs; tests only
	holdFlows    atomic.Bool                               // the flow pass takes no flow over; tests only
	runtimes     []*runtimeState                           // the runtimes.d descriptors (runtimes.go); set at Start

	startResults []StartResult // what became of the config's services list at Start (startup.go)
}

type driverState struct {
	driver sandbox.Driver
	// tested is closed when the self-test the node started it with has
	// ended; until then the driver is disabled, "self-test running".
	tested chan struct{}

	mu      sync.Mutex // enabled and reason change on andromeda selftest
	enabled bool
	reason  string
}

// reasonTesting is a driver's reason while its self-test at start runs.
const reasonTesting = "self-test running"

// status says whether the driver is enabled, and why not, as it is now: a
// driver whose self-test at start still runs is not enabled yet. Callers
// that can wait call wait first.
func (d *driverState) status() (enabled bool, reason string) {
	if d == nil {
		return false, ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.enabled, d.reason
}

// wait waits until the driver's self-test at start has ended, or ctx
// ends.
func (d *driverState) wait(ctx context.Context) error {
	if d == nil {
		return nil
	}
	select {
	case <-d.tested:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitDrivers waits for the self-tests at start of the named drivers (of
// every driver when names is empty), or until ctx ends.
func (n *Node) waitDrivers(ctx context.Context, names ...string) error {
	for name, d := range n.drivers {
		if len(names) > 0 && !slices.Contains(names, name) {
			continue
		}
		if err := d.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// New checks cfg and returns a node that has not started anything yet.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	lim, err := cfg.ceilings()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pol, err := policy.Compile(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	n := &Node{cfg: cfg, log: log, limits: lim, services: map[string]*deployed{}, drivers: map[string]*driverState{}, unrecorded: newUnrecorded()}
	n.pol.Store(pol)
	if n.srcClient, err = cfg.Sources.client(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return n, nil
}

// Start brings the node up: data dir, operator token, bus, store, drivers,
// services, triggers, HTTP. A failure part-way undoes what was done, newest
// first.
func (n *Node) Start(ctx context.Context) (err error) {
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.advertCtx, n.advertStop = context.WithCancel(context.Background())
	n.started = time.Now()
	defer func() {
		if err != nil {
			err = errors.Join(err, n.unwind())
		}
	}()
	if err := os.MkdirAll(n.cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// Before anything in the data dir is touched: one node per data dir.
	lock, err := LockDataDir(n.cfg.Data)
	if err != nil {
		return err
	}
	n.undo = append(n.undo, lock.Unlock)
	// Staging dirs left by a node killed mid-submission hold nothing
	// anyone refers to.
	os.RemoveAll(filepath.Join(n.cfg.Data, "tmp"))
	if err := n.loadOperatorToken(); err != nil {
		return err
	}
	if err := n.loadNodeKey(); err != nil {
		return err
	}
	// The embedded store's files are checked before the server reads
	// them: it would cut a damaged block short and lose what follows.
	natsDir := filepath.Join(n.cfg.Data, "nats")
	var files store.FileReport
	if n.cfg.NATS.URL == "" {
		if files, err = store.PrepareFiles(natsDir, n.cfg.Repair); err != nil {
			return err
		}
		for _, f := range files.Damaged() {
			n.log.Warn("store files damaged", "stream", f.Stream, "problem", f.Problem(), "repaired", f.Repaired, "quarantine", files.Quarantine)
		}
	}
	n.bus, err = bus.Open(ctx, bus.Config{URL: n.cfg.NATS.URL, Dir: natsDir, Listen: n.cfg.NATS.Listen, Name: n.cfg.Name, Logger: n.log,
		Cluster: n.cfg.Cluster.busCluster(), Replicas: n.cfg.replicas()})
	if err != nil {
		return err
	}
	n.undo = append(n.undo, n.bus.Close)
	if err := n.openNATSAuth(ctx); err != nil {
		return err
	}
	disk, err := newDiskMonitor(n.cfg.Data, n.cfg.Disk, n.log)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	disk.start()
	n.undo = append(n.undo, disk.Close)
	n.gate = newWorkGate(disk, n.bus, n.log)
	n.store, err = store.Open(ctx, n.bus, store.Config{
		RunsPerService: n.cfg.Runs.PerService,
		MaxRunBytes:    n.cfg.Runs.MaxRecordBytes,
		RunsMaxBytes:   n.cfg.Runs.MaxTotalBytes,
		MaxStateBytes:  int(n.limits.state),
		Replicas:       n.bus.Replicas(),
		Timeout:        n.storeTimeout(),
		Node:           n.cfg.Name,
		Repair:         n.cfg.Repair,
		Files:          files,
	})
	if err != nil {
		return err
	}
	n.undo = append(n.undo, n.store.Close) // run records still waiting for their ack, before the bus goes
	n.reportRecovery()
	if n.secrets, err = openSecrets(n.ctx, n.bus.JS, n.bus.Replicas(), n.cfg.Secrets, n.log); err != nil {
		return err
	}
	n.undo = append(n.undo, n.secrets.close)
	if err := n.openExecutions(n.ownAddrs); err != nil {
		return err
	}
	n.undo = append(n.undo, n.exec.close) // after runs in flight have finished
	// Runs written ahead of a state change that a crash cut short are
	// recorded before anything can run again.
	if err := n.reconcilePending(ctx); err != nil {
		return err
	}
	n.startRetrying()
	n.metrics = newNodeMetrics(n)
	n.gate.register(n.metrics.reg)
	n.admission.register(n.metrics.reg)
	if err := n.openWatch(ctx); err != nil {
		return err
	}
	n.undo = append(n.undo, n.closeWatch) // after runs in flight have finished
	if err := n.openRegistry(ctx); err != nil {
		return err
	}
	n.undo = append(n.undo, n.reg.close) // left only once its services have stopped
	n.reg.start()
	if n.cfg.clustered() {
		if err := n.openPlacements(ctx); err != nil {
			return err
		}
		n.undo = append(n.undo, n.place.close)
		if err := n.servePlacements(); err != nil {
			return err
		}
		if err := n.serveForwarded(); err != nil {
			return err
		}
		if err := n.serveClusterFlows(); err != nil {
			return err
		}
		if err := n.serveServiceCalls(); err != nil {
			return err
		}
	}
	n.log.Info("node opened", "took_ms", ms(time.Since(n.started)))
	n.startDrivers(ctx)
	n.reg.drivers.Store(true)
	// Unwound in reverse: triggers stop, then runs in flight finish and
	// deployments stop, then the bus closes.
	n.undo = append(n.undo, n.stopServices)
	if err := n.openEvents(ctx); err != nil {
		return err
	}
	n.undo = append(n.undo, n.stopEvents) // before runs are waited for and deployments stop
	n.startPostgres()
	if err := n.openTicks(ctx); err != nil {
		return err
	}
	n.sched = trigger.NewScheduler(trigger.Config{Prewarm: n.prewarmTick}, n.tick)
	n.sched.Start()
	n.undo = append(n.undo, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return n.sched.Stop(sctx)
	})
	if err := n.restore(ctx); err != nil {
		return err
	}
	if err := n.cfg.HTTP.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	n.ln, err = net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", n.cfg.Listen, err)
	}
	if err := n.reg.listening(ctx, n.ln.Addr().String()); err != nil {
		return err
	}
	if err := n.listenHooks(); err != nil {
		return err
	}
	if err := n.startBrowser(); err != nil {
		return err
	}
	handler := server.New(n, n.cfg.HTTP.serverConfig(server.Config{
		MaxArchiveBytes: n.limits.maxArchive,
		SeedEndpoint:    n.cfg.SeedEndpoint.Enabled,
		SeedAnonymous:   n.cfg.SeedEndpoint.Anonymous,
	}), n.log)
	n.http = handler.HTTPServer(slog.NewLogLogger(n.log.Handler(), slog.LevelWarn))
	go n.http.Serve(handler.Listener(n.ln))
	n.undo = append(n.undo, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return n.http.Shutdown(sctx)
	})
	// Executions the node stopped in the middle of go on, under the same
	// idempotency keys.
	if err := n.exec.resume(ctx); err != nil {
		return fmt.Errorf("resume executions: %w", err)
	}
	n.natsReady()
	if err := n.startServices(ctx); err != nil {
		return err
	}
	if err := n.startFlows(ctx); err != nil {
		return err
	}
	n.reg.placing.Store(n.place != nil)
	// Undone first: no failover pass takes a service over while the node
	// stops.
	n.undo = append(n.undo, func() error {
		n.reg.placing.Store(false)
		n.reg.passes.Wait()
		return nil
	})
	n.mu.Lock()
	n.ready = true
	n.mu.Unlock()
	n.log.Info("node started", "took_ms", ms(time.Since(n.started)))
	return nil
}

// ownAddrs are the node's listening addresses, which executions never
// reach: the API, the webhooks' own listener, and the embedded NATS
// server's client port.
func (n *Node) ownAddrs() []string {
	var out []string
	for _, ln := range []net.Listener{n.ln, n.hooksLn} {
		if ln != nil {
			out = append(out, ln.Addr().String())
		}
	}
	if n.cfg.NATS.Listen != "" {
		out = append(out, n.cfg.NATS.Listen)
	}
	return out
}

// Addr is the address the API listens on (useful with port 0).
func (n *Node) Addr() string {
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// HooksAddr is the address webhooks are served on: the hooks listener's
// (http.hooks_listen), else the API's.
func (n *Node) HooksAddr() string {
	if n.hooksLn != nil {
		return n.hooksLn.Addr().String()
	}
	return n.Addr()
}

// URL is the API's base URL.
func (n *Node) URL() string { return "http://" + n.Addr() }

// Close stops the API, the triggers, every deployment and the bus, newest
// first, and waits for runs in flight. Safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() { err = n.unwind() })
	return err
}

func (n *Node) unwind() error {
	n.mu.Lock()
	n.ready = false
	n.mu.Unlock()
	if n.advertStop != nil {
		n.advertStop()
		n.adverts.Wait()
	}
	if n.reg != nil {
		// A stopping node takes nothing over: the failover passes in
		// flight end now, not when the registry closes (a pass waiting
		// out a cluster without a majority would hold the stop).
		n.reg.haltPasses()
	}
	n.quiesce()
	var errs []error
	for i := len(n.undo) - 1; i >= 0; i-- {
		if err := n.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	n.undo = nil
	if n.cancel != nil {
		n.cancel()
	}
	n.testing.Wait() // self-tests still running end with n.ctx
	for _, d := range n.drivers {
		if err := d.driver.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Node) startDrivers(ctx context.Context) {
	budget, _ := parseBytes(n.cfg.Wasm.MemoryBudget) // checked by Validate
	w := wasm.New(wasm.Config{CacheDir: filepath.Join(n.CacheDir(), "wasm"), MemoryBudget: budget})
	n.addDriver(ctx, w, nil)
	pc := process.DefaultConfig()
	pc.WorkDir = filepath.Join(n.cfg.Data, "process")
	pc.Logger = n.log
	pc.AllowAnyDepSource = n.cfg.Deps.AnySource
	pc.Registries = map[string]string{}
	for lang, regs := range n.Policy().Policy().Registries {
		if len(regs) > 0 && lang != "docker" { // image sources, the docker driver's
			pc.Registries[lang] = regs[0]
		}
	}
	p := process.New(pc)
	n.addDriver(ctx, p, nil)
	n.process = p
	n.startDocker(ctx, pc)
	for _, d := range n.testDrivers {
		n.addDriver(ctx, d, nil)
		if p, ok := d.(*process.Driver); ok {
			n.process = p
		}
	}
	n.loadRuntimes(ctx)
}

// addDriver adds d and starts its self-test in the background, so that
// the node's start does not wait for every driver's: until the test ends
// the driver is disabled ("self-test running"), and what needs it waits
// for it (a deploy on it, admission of a service it may run, /v1/node,
// /v1/offer). then, when not nil, runs after a test that passed. One of
// the same name it replaces (tests do that) is closed.
func (n *Node) addDriver(ctx context.Context, d sandbox.Driver, then func(context.Context)) {
	for _, t := range n.testDrivers {
		if t != d && t.Name() == d.Name() {
			d.Close() // a test's driver replaces it: not worth its self-test
			return
		}
	}
	if old, ok := n.drivers[d.Name()]; ok {
		<-old.tested
		old.driver.Close()
	}
	st := &driverState{driver: d, tested: make(chan struct{}), reason: reasonTesting}
	n.drivers[d.Name()] = st
	n.testing.Go(func() {
		defer close(st.tested)
		tctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		defer cancel()
		start := time.Now()
		err := safeTest(tctx, d)
		st.mu.Lock()
		st.enabled, st.reason = err == nil, ""
		if err != nil {
			st.reason = err.Error()
		}
		st.mu.Unlock()
		if err != nil {
			n.log.Warn("driver disabled", "driver", d.Name(), logErr, err, "took_ms", ms(time.Since(start)))
			return
		}
		n.log.Info("driver ready", "driver", d.Name(), "took_ms", ms(time.Since(start)))
		if then != nil {
			then(n.ctx)
		}
	})
}

// CacheDir is the configured cache dir, or <data>/cache.
func (n *Node) CacheDir() string {
	if n.cfg.Cache != "" {
		return n.cfg.Cache
	}
	return filepath.Join(n.cfg.Data, "cache")
}

// SetHTTPClient sets the client the node fetches source.location archives
// and source.git repositories with, instead of the one sources.ca_file
// configures (tests use it to trust their own TLS server). Call before
// Start.
func (n *Node) SetHTTPClient(c *http.Client) { n.client = c }

func (n *Node) httpClient() *http.Client {
	if n.client != nil {
		return n.client
	}
	if n.srcClient != nil {
		return n.srcClient
	}
	return &http.Client{Timeout: sourceFetchTimeout}
}

// OperatorToken reads the operator token from the data dir.
func OperatorToken(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, TokenFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (n *Node) loadOperatorToken() error {
	path := filepath.Join(n.cfg.Data, TokenFile)
	tok, err := OperatorToken(n.cfg.Data)
	if errors.Is(err, os.ErrNotExist) {
		tok = newSecret()
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("operator token: %w", err)
		}
		n.log.Info("created operator token", "path", path)
	} else if err != nil {
		return fmt.Errorf("operator token: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("operator token %s: mode %o lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	if tok == "" {
		return fmt.Errorf("operator token %s: file is empty", path)
	}
	n.operatorHash = sha256.Sum256([]byte(tok))
	return nil
}

func newSecret() string {
	var b [24]byte
	rand.Read(b[:])
	return "and_" + hex.EncodeToString(b[:])
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// Authenticate implements server.Backend.
func (n *Node) Authenticate(ctx context.Context, token string) (server.Principal, error) {
	h := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(h[:], n.operatorHash[:]) == 1 {
		return server.Principal{Name: "operator", Role: api.RoleOperator}, nil
	}
	t, err := n.store.Token(ctx, tokenHash(token))
	if errors.Is(err, store.ErrNotFound) {
		return server.Principal{}, err
	}
	if err != nil {
		// Not the token's fault: a 401 would have the client drop a
		// valid token.
		return server.Principal{}, &server.Error{Kind: server.ErrUnavailable, Msg: "the node could not check the token: its store did not answer (" + err.Error() + ")", RetryAfter: retryUnavailable}
	}
	return server.Principal{Name: t.Name, Role: t.Role}, nil
}

// CreateToken implements server.Backend.
func (n *Node) CreateToken(ctx context.Context, name, role string) (api.Token, error) {
	var problems []string
	if !validTokenName(name) {
		problems = append(problems, "name: must match [a-z0-9][a-z0-9-]{0,62}")
	} else if name == "operator" || name == "anonymous" {
		// Owners are named by token name: these two stand for the node's
		// operator and the seed endpoint's anonymous submitter.
		problems = append(problems, "name: "+name+" is reserved")
	}
	if role != api.RoleSubmitter && role != api.RoleOperator && role != api.RoleRuntime {
		problems = append(problems, "role: must be submitter, operator or runtime")
	}
	if len(problems) > 0 {
		return api.Token{}, &server.Error{Kind: server.ErrInvalid, Msg: "invalid token request", Problems: problems}
	}
	t := api.Token{Name: name, Role: role, Secret: newSecret(), Created: time.Now().UTC()}
	if err := n.store.PutToken(ctx, tokenHash(t.Secret), store.TokenRecord{Name: t.Name, Role: t.Role, Created: t.Created}); err != nil {
		return api.Token{}, err
	}
	n.log.Info("token created", "name", name, "role", role)
	return t, nil
}

func validTokenName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (c == '-' && i > 0)
		if !ok {
			return false
		}
	}
	return true
}

// HoldReady keeps the node unready (/readyz answers 503 "starting:
// what") until release is called, so that a caller that brings up more
// after Start (serve --demo deploying the demo) is waited for by whoever
// waits for readiness. Call it before Start to leave no ready moment in
// between. release may be called more than once.
func (n *Node) HoldReady(what string) (release func()) {
	_, release = n.HoldReadySay(what)
	return release
}

// HoldReadySay is HoldReady with a say that replaces what the hold says
// on /readyz as the work goes on ("building demo services (2/3)").
func (n *Node) HoldReadySay(what string) (say func(string), release func()) {
	key := &what
	n.mu.Lock()
	if n.holds == nil {
		n.holds = map[*string]struct{}{}
	}
	n.holds[key] = struct{}{}
	n.mu.Unlock()
	say = func(s string) {
		n.mu.Lock()
		*key = s
		n.mu.Unlock()
	}
	return say, func() {
		n.mu.Lock()
		delete(n.holds, key)
		n.mu.Unlock()
	}
}

// Ready implements server.Backend.
func (n *Node) Ready() error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if !n.ready {
		return errors.New("node starting or stopping")
	}
	if len(n.holds) > 0 {
		var what []string
		for k := range n.holds {
			what = append(what, *k)
		}
		slices.Sort(what)
		return errors.New("starting: " + strings.Join(what, "; "))
	}
	if n.bus.Conn == nil || !n.bus.Conn.IsConnected() {
		return errors.New("not connected to NATS")
	}
	return n.gate.check()
}

// Node implements server.Backend. It waits for drivers whose self-test at
// start still runs, so that what it says of them is their test's outcome.
func (n *Node) Node(ctx context.Context) api.NodeInfo {
	n.waitDrivers(ctx)
	info := api.NodeInfo{Version: Version, Started: n.started, Data: n.cfg.Data, Bus: "embedded", NodeKey: n.key.Public().String()}
	if !n.bus.Embedded() {
		info.Bus = n.cfg.NATS.URL
	}
	for _, name := range slices.Sorted(maps.Keys(n.drivers)) {
		d := n.drivers[name]
		offer, _ := json.Marshal(d.driver.Offer())
		enabled, reason := d.status()
		info.Drivers = append(info.Drivers, api.DriverStatus{Name: name, Enabled: enabled, Reason: reason, Offer: offer})
	}
	n.mu.RLock()
	info.Services = len(n.services)
	n.mu.RUnlock()
	return info
}

// PolicyInfo implements server.Backend.
func (n *Node) PolicyInfo(ctx context.Context) api.PolicyInfo {
	pol := n.Policy()
	b, _ := json.Marshal(pol.Policy())
	return api.PolicyInfo{Digest: pol.Digest(), Policy: b, NodeKey: n.key.Public().String()}
}

// Metrics implements server.Backend.
func (n *Node) Metrics() http.Handler { return n.metrics.reg }

var _ server.Backend = (*Node)(nil)
