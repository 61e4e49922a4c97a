package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// LifecycleConfig tunes the lifecycle steps an operator drives (deploy,
// start, stop, rm).
type LifecycleConfig struct {
	// StopGrace is how long a stop (and an rm) lets a service's runs in
	// flight finish before it kills them, from 0 to 10m; a stop request
	// may name its own (stop --grace). Default 5s.
	StopGrace string `json:"stop_grace" yaml:"stop_grace"`
	// Prewarm is how long before a cron tick the node prepares what the
	// tick's run would otherwise wait for: a dormant service's deployment,
	// a command-mode process service's worker (its interpreter and
	// sandbox started). From 0s (off) to 1m. Default 1s.
	Prewarm string `json:"prewarm" yaml:"prewarm"`
}

// maxStopGrace bounds a stop's grace, from the config or a request.
const maxStopGrace = 10 * time.Minute

// DefaultLifecycleConfig returns the documented defaults.
func DefaultLifecycleConfig() LifecycleConfig {
	return LifecycleConfig{StopGrace: "5s", Prewarm: "1s"}
}

// maxPrewarm bounds lifecycle.prewarm.
const maxPrewarm = time.Minute

// Validate reports a bad stop_grace or prewarm with its key.
func (c LifecycleConfig) Validate() error {
	_, err := c.grace()
	_, perr := c.prewarm()
	return errors.Join(err, perr)
}

// prewarm is lifecycle.prewarm; empty is the default.
func (c LifecycleConfig) prewarm() (time.Duration, error) {
	if c.Prewarm == "" {
		c.Prewarm = DefaultLifecycleConfig().Prewarm
	}
	d, err := time.ParseDuration(c.Prewarm)
	if err != nil || d < 0 || d > maxPrewarm {
		return 0, fmt.Errorf("lifecycle.prewarm: must be a duration from 0s to %s", maxPrewarm)
	}
	return d, nil
}

func (c LifecycleConfig) grace() (time.Duration, error) {
	d, err := time.ParseDuration(c.StopGrace)
	if err != nil || d < 0 || d > maxStopGrace {
		return 0, fmt.Errorf("lifecycle.stop_grace: must be a duration from 0s to %s", maxStopGrace)
	}
	return d, nil
}

// recordWait bounds how long a stop waits, after killing its runs, for
// them to be recorded: killing ends a call at once, recording is one
// store write.
const recordWait = 10 * time.Second

// lifecycle serialises the steps of each service: a submission, deploy,
// start, stop or removal of a service waits for the one under way.
type lifecycle struct {
	mu    sync.Mutex
	locks map[string]*serviceLock
}

type serviceLock struct {
	mu    sync.Mutex
	users int
}

// lockService takes service's lifecycle lock and returns its release.
func (n *Node) lockService(service string) (unlock func()) {
	l := &n.life
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*serviceLock{}
	}
	sl := l.locks[service]
	if sl == nil {
		sl = &serviceLock{}
		l.locks[service] = sl
	}
	sl.users++
	l.mu.Unlock()
	sl.mu.Lock()
	return func() {
		sl.mu.Unlock()
		l.mu.Lock()
		if sl.users--; sl.users == 0 {
			delete(l.locks, service)
		}
		l.mu.Unlock()
	}
}

// phase is a deployed service's live phase and its runs in flight: a run
// enters only while the service is started, and a stop waits for the
// runs that entered before it.
type phase struct {
	mu     sync.Mutex
	name   string
	active int
	idle   chan struct{} // closed when active drops to 0; nil when nobody waits
}

func (p *phase) get() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.name
}

func (p *phase) set(name string) {
	p.mu.Lock()
	p.name = name
	p.mu.Unlock()
}

// enter counts a run in when the service is started; otherwise it
// returns the phase that refuses it.
func (p *phase) enter() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.name != api.PhaseStarted {
		return p.name, false
	}
	p.active++
	return p.name, true
}

func (p *phase) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active--; p.active == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// drained is closed once no run that entered is in flight.
func (p *phase) drained() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	return p.idle
}

// record is a copy of d's record, taken while no lifecycle step writes
// it.
func (d *deployed) record() store.Service {
	d.deployMu.Lock()
	defer d.deployMu.Unlock()
	return d.rec
}

// notStarted is the conflict a run of a service that is not started
// meets, naming its phase.
func notStarted(service, phase string) error {
	switch phase {
	case api.PhaseDeployed:
		return server.Errorf(server.ErrConflict, "service %s is deployed but not started: start it first (andromeda start %s)", service, service)
	case api.PhaseStopped, api.PhaseStopping:
		return server.Errorf(server.ErrConflict, "service %s is %s: start it first (andromeda start %s)", service, phase, service)
	}
	return server.Errorf(server.ErrConflict, "service %s is %s, not started", service, phase)
}

// recordPhase is the phase a record says. Records written before phases
// existed say it in Status: "deployed" and "dormant" meant started.
func recordPhase(r store.Service) string {
	if r.Phase != "" {
		return r.Phase
	}
	switch r.Status {
	case statusDeployed, statusDormant:
		return api.PhaseStarted
	case statusFailed:
		return api.PhaseFailed
	}
	return r.Status
}

// withPhase is rec in phase p. Status keeps its older, coarser words:
// "deployed" for a started service too (as records before phases said),
// "dormant" for one whose deployment waits for its first trigger, else
// the phase; detail is for failed.
func withPhase(rec store.Service, p string, waiting bool, detail string) store.Service {
	rec.Phase, rec.Status, rec.StatusDetail = p, p, detail
	if p == api.PhaseStarted {
		rec.Status = statusDeployed
	}
	if waiting && rec.Decision.Dormant && (p == api.PhaseStarted || p == api.PhaseDeployed) {
		rec.Status = statusDormant
	}
	return rec
}

// livePhase is the phase of rec as the node sees it now: the live phase
// of its deployment when there is one, else what the record says.
func (n *Node) livePhase(rec store.Service) string {
	if d := n.lookup(rec.Name); d != nil && d.rec.Digest == rec.Digest {
		if p := d.life.get(); p != "" {
			return p
		}
	}
	return recordPhase(rec)
}

// stopGrace is the config's lifecycle.stop_grace.
func (n *Node) stopGrace() time.Duration {
	g, err := n.cfg.Lifecycle.grace()
	if err != nil {
		return 5 * time.Second // Validate refused it; a Config built in code may skip it
	}
	return g
}

// DeployService implements server.LifecycleBackend: prepare a service that
// has no deployment (admitted, stopped, failed) without starting it. A
// deployed service answers again what its deploy found; a started one is
// a conflict. A deploy that fails leaves the service failed with the
// reason, and answers it in Valid.Err.
func (n *Node) DeployService(ctx context.Context, p server.Principal, name string) (api.DeployResult, error) {
	if r, done, err := forwardService[api.DeployResult](ctx, n, p, serviceCall{Op: "deploy", Service: name}); done {
		return r, err
	}
	if err := n.notPlacedHere(name); err != nil {
		return api.DeployResult{}, err
	}
	unlock := n.lockService(name)
	defer unlock()
	rec, err := n.owned(ctx, p, name)
	if err != nil {
		return api.DeployResult{}, err
	}
	switch ph := n.livePhase(rec); ph {
	case api.PhaseStarted, api.PhaseStopping:
		return api.DeployResult{}, server.Errorf(server.ErrConflict, "service %s is %s: it is deployed already; stop it to deploy it again", name, ph)
	case api.PhaseDeployed:
		return n.deployResult(n.lookup(name).record(), nil), nil
	}
	d, err := n.deployRecord(ctx, rec)
	if err != nil {
		if ferr := n.markFailed(ctx, rec, err); ferr != nil {
			return api.DeployResult{}, ferr
		}
		rec, _ = n.store.Service(ctx, name)
		return n.deployResult(rec, err), nil
	}
	return n.deployResult(d.rec, nil), nil
}

// deployResult is the deploy answer for rec, in the Golem runtime API's
// shape.
func (n *Node) deployResult(rec store.Service, failure error) api.DeployResult {
	r := api.DeployResult{StartMode: api.StartEmpty, Volumes: []api.Volume{}, Service: n.view(rec)}
	if m, err := manifest.Parse(rec.Manifest, manifest.JSON); err == nil {
		if m.Mode == manifest.ModeServer {
			r.StartMode = api.StartBlocking
		}
		if vs := volumeInfo(n.volumeSpecs(rec.Name, m)); vs != nil {
			r.Volumes = vs
		}
	}
	if failure != nil {
		msg := failure.Error()
		r.Valid.Err = &msg
	} else {
		r.Valid.Ok = &api.DeployOK{Driver: rec.Decision.Driver, Version: rec.Version, Digest: rec.Digest}
	}
	return r
}

// deployRecord makes rec's deployment from its files (unpacked again
// from the artifact when they are gone), records it deployed and makes it
// the service's deployment, not started. The caller holds the service's
// lock.
func (n *Node) deployRecord(ctx context.Context, rec store.Service) (*deployed, error) {
	dir, m, err := n.installFiles(ctx, rec)
	if err != nil {
		return nil, err
	}
	d, err := n.prepare(ctx, rec, m, dir)
	if err != nil {
		return nil, err
	}
	d.rec = withPhase(rec, api.PhaseDeployed, d.dep == nil, "")
	if err := n.store.PutService(ctx, d.rec); err != nil {
		n.stopDeployment(d)
		return nil, err
	}
	d.life.set(api.PhaseDeployed)
	n.install(d)
	n.notify(rec.Owner, api.WatchEvent{Kind: api.WatchDeployed, Service: rec.Name, Version: rec.Version, Phase: api.PhaseDeployed})
	n.log.Info("service deployed", logService, rec.Name, "version", rec.Version)
	return d, nil
}

// markFailed records rec as failed with cause.
func (n *Node) markFailed(ctx context.Context, rec store.Service, cause error) error {
	rec = withPhase(rec, api.PhaseFailed, false, cause.Error())
	if err := n.store.PutService(ctx, rec); err != nil {
		return err
	}
	if d := n.lookup(rec.Name); d != nil {
		d.deployMu.Lock()
		idle := d.dep == nil
		d.deployMu.Unlock()
		if idle {
			n.mu.Lock()
			if n.services[rec.Name] == d {
				delete(n.services, rec.Name)
			}
			n.mu.Unlock()
		}
	}
	n.notify(rec.Owner, api.WatchEvent{Kind: api.WatchFailed, Service: rec.Name, Version: rec.Version, Phase: api.PhaseFailed, Detail: cause.Error()})
	n.log.Error("service failed", logService, rec.Name, "version", rec.Version, logErr, cause)
	return nil
}

// install makes d the service's deployment without arming it; the one it
// replaces must have no deployment left (stopped or never deployed). Its
// event triggers' durable consumers are made now, so that events
// published before its first start wait for it in the stream.
func (n *Node) install(d *deployed) {
	n.mu.Lock()
	n.services[d.rec.Name] = d
	n.mu.Unlock()
	n.holdEvents(d)
}

// StartService implements server.LifecycleBackend: arm a service's
// triggers, deploying it first when it has no deployment (admitted,
// stopped, failed). Starting a started service is a conflict.
func (n *Node) StartService(ctx context.Context, p server.Principal, name string) (api.Service, error) {
	if r, done, err := forwardService[api.Service](ctx, n, p, serviceCall{Op: "start", Service: name}); done {
		return r, err
	}
	if err := n.notPlacedHere(name); err != nil {
		return api.Service{}, err
	}
	unlock := n.lockService(name)
	defer unlock()
	rec, err := n.owned(ctx, p, name)
	if err != nil {
		return api.Service{}, err
	}
	ph := n.livePhase(rec)
	if ph == api.PhaseStarted || ph == api.PhaseStopping {
		return api.Service{}, server.Errorf(server.ErrConflict, "service %s is already %s", name, ph)
	}
	d := n.lookup(name)
	if ph != api.PhaseDeployed || d == nil {
		if d, err = n.deployRecord(ctx, rec); err != nil {
			if ferr := n.markFailed(ctx, rec, err); ferr != nil {
				return api.Service{}, ferr
			}
			return api.Service{}, server.Errorf(server.ErrUnusable, "start %s: %v", name, err)
		}
	}
	if err := n.start(ctx, d, false); err != nil {
		return api.Service{}, err
	}
	return n.view(d.rec), nil
}

// start records d started and arms its triggers; catchUp runs the cron
// ticks missed while the node was down (only at the node's start and a
// submission: ticks that fall due while a service is stopped are not
// run later).
func (n *Node) start(ctx context.Context, d *deployed, catchUp bool) error {
	d.deployMu.Lock()
	rec := withPhase(d.rec, api.PhaseStarted, d.dep == nil, "")
	d.deployMu.Unlock()
	if err := n.store.PutService(ctx, rec); err != nil {
		return err
	}
	d.deployMu.Lock()
	d.rec.Phase, d.rec.Status, d.rec.StatusDetail = rec.Phase, rec.Status, ""
	d.deployMu.Unlock()
	d.life.set(api.PhaseStarted)
	if catchUp {
		n.activate(d)
	} else {
		n.install(d)
		if err := n.sched.Set(d.rec.Name, d.triggers); err != nil {
			n.log.Error("schedule triggers", logService, d.rec.Name, logErr, err)
		}
		n.switchEvents(d)
	}
	n.notify(d.rec.Owner, api.WatchEvent{Kind: api.WatchStarted, Service: d.rec.Name, Version: d.rec.Version, Phase: api.PhaseStarted})
	n.log.Info("service started", logService, d.rec.Name, "version", d.rec.Version)
	return nil
}

// StopService implements server.LifecycleBackend: disarm a service's
// triggers, refuse new runs, give the runs in flight grace (0: the
// config's lifecycle.stop_grace) and then kill them, and release its
// deployment. Its files, state and runs stay. It returns once the runs
// are recorded. Stopping a stopped service is a conflict.
func (n *Node) StopService(ctx context.Context, p server.Principal, name string, grace time.Duration) (api.Service, error) {
	if grace < 0 || grace > maxStopGrace {
		return api.Service{}, server.Errorf(server.ErrInvalid, "grace: must be from 0s to %s", maxStopGrace)
	}
	if r, done, err := forwardService[api.Service](ctx, n, p, serviceCall{Op: "stop", Service: name, GraceMS: grace.Milliseconds()}); done {
		return r, err
	}
	if err := n.notPlacedHere(name); err != nil {
		return api.Service{}, err
	}
	if grace == 0 {
		grace = n.stopGrace()
	}
	unlock := n.lockService(name)
	defer unlock()
	rec, err := n.owned(ctx, p, name)
	if err != nil {
		return api.Service{}, err
	}
	d := n.lookup(name)
	switch ph := n.livePhase(rec); {
	case ph == api.PhaseStopped:
		return api.Service{}, server.Errorf(server.ErrConflict, "service %s is already stopped", name)
	case ph != api.PhaseStarted && ph != api.PhaseDeployed || d == nil:
		return api.Service{}, server.Errorf(server.ErrConflict, "service %s is %s: there is nothing to stop", name, ph)
	}
	if err := n.stop(ctx, d, grace); err != nil {
		return api.Service{}, err
	}
	return n.view(d.rec), nil
}

// stop records d stopped, then halts it. The record is written first: a
// node that dies part-way comes back with the service stopped, as asked.
func (n *Node) stop(ctx context.Context, d *deployed, grace time.Duration) error {
	d.deployMu.Lock()
	rec := withPhase(d.rec, api.PhaseStopped, false, "")
	d.deployMu.Unlock()
	if err := n.store.PutService(ctx, rec); err != nil {
		return err
	}
	start := time.Now()
	n.halt(d, grace)
	d.deployMu.Lock()
	d.rec.Phase, d.rec.Status, d.rec.StatusDetail = rec.Phase, rec.Status, ""
	d.deployMu.Unlock()
	n.notify(d.rec.Owner, api.WatchEvent{Kind: api.WatchStopped, Service: d.rec.Name, Version: d.rec.Version, Phase: api.PhaseStopped})
	n.log.Info("service stopped", logService, d.rec.Name, "version", d.rec.Version, "took", time.Since(start))
	return nil
}

// halt disarms d's triggers and refuses new runs, waits up to grace for
// the runs in flight, then stops the deployment with what is left of
// grace (drivers shut down gracefully until it ends, then kill) and waits
// for the killed runs to be recorded. Events published to d's topics
// meanwhile wait in the stream for its durable consumers; an event whose
// run is killed is delivered again.
func (n *Node) halt(d *deployed, grace time.Duration) {
	name := d.rec.Name
	loops := n.cancelEventLoops(name)
	n.sched.Remove(name)
	d.life.set(api.PhaseStopping)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	select {
	case <-d.life.drained():
	case <-ctx.Done():
		// The grace is over: what still runs is killed like a kill
		// (andromeda kill), and recorded cancelled with the reason.
		by := fmt.Sprintf("stop after its grace of %s", grace)
		for _, fl := range n.inflight.list(func(fl *flight) bool { return fl.service == name }) {
			fl.cancel(by)
		}
	}
	d.deployMu.Lock()
	dep := d.dep
	d.dep = nil
	d.deployMu.Unlock()
	if dep != nil {
		if err := dep.Stop(ctx); err != nil {
			n.log.Warn("stop deployment", logService, name, logErr, err)
		}
	}
	wait := time.NewTimer(recordWait)
	defer wait.Stop()
	select {
	case <-d.life.drained():
	case <-wait.C:
		n.log.Warn("runs still in flight after their deployment stopped", logService, name)
	}
	for _, l := range loops {
		select {
		case <-l.done:
		case <-wait.C:
		}
	}
	d.life.set(api.PhaseStopped)
}

// cancelEventLoops stops service's event loops from fetching and returns
// them; their runs in flight go on, and their durable consumers stay, so
// events wait in the stream.
func (n *Node) cancelEventLoops(service string) []*eventLoop {
	n.events.mu.Lock()
	old := n.events.loops[service]
	delete(n.events.loops, service)
	n.events.mu.Unlock()
	for _, l := range old {
		l.cancel()
	}
	return old
}

// RemoveService implements server.LifecycleBackend: stop the service (with
// the config's grace), then delete its record, state and files. Its runs
// stay for the runs stream's limits unless purge.
func (n *Node) RemoveService(ctx context.Context, name string, purge bool) error {
	n.submitMu.Lock()
	defer n.submitMu.Unlock()
	unlock := n.lockService(name)
	defer unlock()
	rec, err := n.store.Service(ctx, name)
	if err != nil {
		return err
	}
	n.mu.RLock()
	d := n.services[name]
	n.mu.RUnlock()
	if d != nil {
		n.halt(d, n.stopGrace())
	}
	if err := n.store.RemoveService(ctx, name); err != nil {
		return err
	}
	n.regIndex.drop(name)
	if n.place != nil {
		n.place.remove(ctx, name) // the node running it gives it up
	}
	// Its slot goes to the first waiter, even when purging its runs fails
	// below: the service is gone either way.
	defer n.kickAdmission(context.WithoutCancel(ctx))
	n.forgetTicks(name)
	n.dropEvents(name)
	n.mu.Lock()
	delete(n.services, name)
	n.mu.Unlock()
	os.RemoveAll(filepath.Join(n.cfg.Data, "services", name))
	n.removeVolumes(name) // a service's volumes go with it, like its state
	n.metrics.forget(name)
	// The service is gone whether or not its runs purge: watchers hear of
	// it either way, and the caller hears of a purge that failed.
	n.notify(rec.Owner, api.WatchEvent{Kind: api.WatchRemoved, Service: name, Version: rec.Version, Phase: api.PhaseRemoved})
	if purge {
		if err := n.store.PurgeRuns(ctx, name); err != nil {
			n.log.Warn("service removed; its runs were not purged", logService, name, "err", err)
			return fmt.Errorf("service %s removed, but its runs were not purged: %w", name, err)
		}
	}
	n.log.Info("service removed", logService, name, "runs_purged", purge)
	return nil
}

// installFiles makes sure rec's unpacked files are in place, unpacking
// its artifact again when they are gone, and loads its manifest.
func (n *Node) installFiles(ctx context.Context, rec store.Service) (string, *manifest.Service, error) {
	dir := n.serviceDir(rec)
	if _, err := os.Stat(dir); err != nil {
		data, err := n.store.Artifact(ctx, rec.Digest)
		if err != nil {
			return "", nil, err
		}
		staging, err := n.tempDir("restore")
		if err != nil {
			return "", nil, err
		}
		defer os.RemoveAll(staging)
		info, err := archive.Unpack(bytes.NewReader(data), filepath.Join(staging, "svc"), n.limits.archive)
		if err != nil {
			return "", nil, err
		}
		if info.Digest != rec.Digest {
			return "", nil, fmt.Errorf("artifact digest %s does not match the record's %s", info.Digest, rec.Digest)
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return "", nil, err
		}
		if err := os.Rename(filepath.Join(staging, "svc"), dir); err != nil {
			return "", nil, err
		}
	}
	m, err := manifest.Load(dir)
	if err != nil {
		return "", nil, err
	}
	if err := useRecordConfig(rec, m); err != nil {
		return "", nil, err
	}
	return dir, m, nil
}

// restorePhase brings one registered service back to the phase its
// record says: started and deployed services are deployed again (and a
// started one armed, with its missed ticks caught up); a stopped one is
// known, with its files, and not deployed; admitted and failed ones wait
// for an operator.
func (n *Node) restorePhase(ctx context.Context, rec store.Service) error {
	switch recordPhase(rec) {
	case api.PhaseStarted, api.PhaseDeployed:
	case api.PhaseStopped:
		dir, m, err := n.installFiles(ctx, rec)
		if err != nil {
			return err
		}
		d := n.newDeployed(rec, m, dir, nil)
		d.life.set(api.PhaseStopped)
		n.install(d)
		return nil
	default:
		return nil
	}
	dir, m, err := n.installFiles(ctx, rec)
	if err != nil {
		return err
	}
	d, err := n.prepare(ctx, rec, m, dir)
	if err != nil {
		return err
	}
	if recordPhase(rec) == api.PhaseDeployed {
		d.life.set(api.PhaseDeployed)
		n.install(d)
		n.log.Info("service restored, deployed and not started", logService, rec.Name, "version", rec.Version)
		return nil
	}
	d.life.set(api.PhaseStarted)
	n.activate(d)
	n.log.Info("service restored", logService, rec.Name, "version", rec.Version)
	return nil
}

// replaceStopped makes d, deployed and not started, the service's
// deployment (submit --no-start): the version it replaces is halted
// first, so that its triggers are disarmed and its runs end before d
// takes its place.
func (n *Node) replaceStopped(d *deployed) {
	old := n.lookup(d.rec.Name)
	if old != nil {
		n.halt(old, n.stopGrace())
	}
	d.life.set(api.PhaseDeployed)
	n.install(d)
	if old != nil && old.dir != d.dir {
		os.RemoveAll(old.dir)
	}
}
