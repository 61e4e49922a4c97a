package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/health"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/source"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Service statuses.
const (
	statusDeployed = "deployed"
	statusFailed   = "failed"
	statusDormant  = "dormant"
)

// deployed is one service this node runs: its record and manifest, and
// what the node keeps beside them to run it.
type deployed struct {
	rec        store.Service
	manifest   *manifest.Service
	dir        string
	dep        sandbox.Deployment
	sem        chan struct{} // bounds parallel runs: resources.concurrency
	health     *health.Tracker
	manual     bool
	manualName string
	triggers   []trigger.Spec
	deployMu   sync.Mutex // guards dep and rec.Status while a dormant service deploys
	stateMu    sync.Mutex // serialises state writers after repeated conflicts
	contended  atomic.Int32
	rates      rates // runs and actions of the last minute, for capabilities.caps

	live    atomic.Pointer[liveConfig] // the config next runs get (config_set.go)
	life    phase                      // the live phase and the runs in flight (lifecycle.go)
	volumes []sandbox.Volume
}

// timeout bounds one invocation: the admitted limits.timeout.
func (d *deployed) timeout() time.Duration { return limitsOf(d.rec.Decision.Limits).Timeout }

func (n *Node) lookup(name string) *deployed {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.services[name]
}

// Submit implements server.Backend: unpack, validate, admit, store, deploy,
// and only then replace the running version. Any failure leaves the
// registry, the running deployment and the data dir as they were.
func (n *Node) Submit(ctx context.Context, p server.Principal, body io.Reader, o api.SubmitOptions) (api.SubmitResult, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return api.SubmitResult{}, err
	}
	if len(data) == 0 {
		return api.SubmitResult{}, server.Errorf(server.ErrInvalid, "empty body: send the service as a tar.gz archive (andromeda submit DIR)")
	}
	return n.queued(ctx, o, func(ctx context.Context) (api.SubmitResult, error) {
		return n.submitArchive(ctx, p, data, o, nil)
	})
}

// SubmitSource implements server.Backend: a manifest whose source.location
// the node fetches itself. The manifest is admitted first (no code is
// fetched for a service the policy refuses), then the archive is fetched
// over HTTPS with the policy's size cap and digest check and submitted like
// an upload; the archive's own manifest must name the same service and
// version.
func (n *Node) SubmitSource(ctx context.Context, p server.Principal, manifestJSON []byte, o api.SubmitOptions) (api.SubmitResult, error) {
	m, err := manifest.Check(manifestJSON, manifest.JSON)
	if err != nil {
		return api.SubmitResult{}, err
	}
	if m.Source.Location == "" && m.Source.Git == "" {
		return api.SubmitResult{}, server.Errorf(server.ErrInvalid, "source.location: required when submitting a manifest without an archive (or source.git)")
	}
	return n.queued(ctx, o, func(ctx context.Context) (api.SubmitResult, error) {
		return n.submitSource(ctx, p, m, o)
	})
}

// submitSource is SubmitSource for a checked manifest: admit, fetch,
// submit. The caller holds submitMu.
func (n *Node) submitSource(ctx context.Context, p server.Principal, m *manifest.Service, o api.SubmitOptions) (api.SubmitResult, error) {
	pol := n.Policy()
	sub, err := n.submission(ctx, m, "", 0, o)
	if err != nil {
		return api.SubmitResult{}, err
	}
	view, err := n.policyView(ctx, candidateDrivers(m, sub)...)
	if err != nil {
		return api.SubmitResult{}, err
	}
	// A service the policy forwards is fetched all the same: the archive
	// goes to the peer, judged again here once fetched.
	d := n.decide(ctx, p, pol, &sub, view)
	switch d.Verdict {
	case policy.Run:
		if err := n.checkCapacity(ctx, pol, m.Name, view.Services, o.Origin); err != nil {
			return api.SubmitResult{}, err
		}
	case policy.Forward:
	default:
		return api.SubmitResult{}, decisionError(m, d)
	}
	lim := n.limits.archive
	lim.MaxCompressed = min(lim.MaxCompressed, pol.Policy().MaxPayload.Int64())
	if m.Source.Git != "" {
		return n.submitGit(ctx, p, m, lim, pol.Policy().AllowedSources, o)
	}
	n.log.Info("fetching service source", logService, m.Name, "location", m.Source.Location)
	data, err := source.Fetch(ctx, n.httpClient(), m.Source.Location, m.Source.Digest, lim, pol.Policy().AllowedSources)
	if err != nil {
		return api.SubmitResult{}, server.Errorf(server.ErrUnusable, "%v", err)
	}
	return n.submitArchive(ctx, p, data, o, m)
}

// submitArchive is the one submission path; the caller holds submitMu
// (queued takes it).
// want, when set, is the manifest the archive must match (source services).
func (n *Node) submitArchive(ctx context.Context, p server.Principal, data []byte, o api.SubmitOptions, want *manifest.Service) (api.SubmitResult, error) {
	staging, err := n.tempDir("staging")
	if err != nil {
		return api.SubmitResult{}, err
	}
	defer os.RemoveAll(staging)
	dir := filepath.Join(staging, "svc")
	info, err := archive.Unpack(bytes.NewReader(data), dir, n.limits.archive)
	if err != nil {
		return api.SubmitResult{}, err
	}
	m, err := manifest.Load(dir)
	if err != nil {
		return api.SubmitResult{}, err
	}
	if want != nil && (m.Name != want.Name || m.Version != want.Version) {
		return api.SubmitResult{}, server.Errorf(server.ErrUnusable, "source: the fetched archive holds %s %s, not %s %s", m.Name, m.Version, want.Name, want.Version)
	}
	if want != nil {
		m.Source = want.Source // where the code came from, for the policy and the record
	}
	unlock := n.lockService(m.Name)
	defer unlock()
	prev, err := n.store.Service(ctx, m.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return api.SubmitResult{}, err
	}
	if exists && !p.Operator() && prev.Owner != p.Name {
		// Who owns it is not said: a submitter learns no other's name.
		return api.SubmitResult{}, server.Errorf(server.ErrForbidden, "service %s has another owner; only its owner or the operator may replace it", m.Name)
	}
	if err := checkPublicTopics(p, prev, exists, m); err != nil {
		return api.SubmitResult{}, err
	}
	if exists && prev.Version == m.Version && prev.Digest != info.Digest {
		return api.SubmitResult{}, server.Errorf(server.ErrConflict, "version: %s %s is already registered with digest %s; a changed service needs a new version", m.Name, m.Version, prev.Digest)
	}
	if exists && prev.Digest == info.Digest && n.lookup(m.Name) != nil {
		return api.SubmitResult{Service: n.view(prev), Unchanged: true}, nil
	}
	if err := n.hookConflict(m); err != nil {
		return api.SubmitResult{}, err
	}
	if err := n.clusterHookConflict(m); err != nil {
		return api.SubmitResult{}, err
	}
	pol := n.Policy()
	sub, err := n.submission(ctx, m, info.Digest, int64(len(data)), o)
	if err != nil {
		return api.SubmitResult{}, err
	}
	if n.place != nil && o.Forwarded == nil && o.PlacedBy == "" {
		if err := n.placeHere(ctx, p, m, sub, info.Digest, data, &o); err != nil {
			return api.SubmitResult{}, err
		}
	}
	if o.Forwarded != nil {
		if sub.Hops, sub.Depth, err = n.acceptForwarded(o.Forwarded, m, info.Digest); err != nil {
			return api.SubmitResult{}, err
		}
	}
	if exists {
		if sub.Previous, err = previousManifest(prev); err != nil {
			return api.SubmitResult{}, err
		}
	}
	view, err := n.policyView(ctx, candidateDrivers(m, sub)...)
	if err != nil {
		return api.SubmitResult{}, err
	}
	if exists {
		view.Services-- // the service replaces itself
		if view.Targets[m.Target] == m.Name {
			delete(view.Targets, m.Target)
		}
	}
	decision := n.decide(ctx, p, pol, &sub, view)
	if len(o.Notes) > 0 { // what the node did on the way in, before admission's reasons
		decision.Reasons = append(slices.Clone(o.Notes), decision.Reasons...)
	}
	if decision.Verdict == policy.Forward && o.Forwarded != nil && o.Forwarded.Advertise {
		// An offer this node's policy refuses is refused, not passed on:
		// the node that offers it decides where it goes.
		decision.Verdict, decision.Forward = policy.Reject, nil
		decision.Reasons = append(decision.Reasons, policy.Reason{Rule: "peers", OK: false, Detail: "not forwarded: an advertised service is not passed on"})
	}
	if decision.Verdict == policy.Forward {
		return n.forward(ctx, p, pol, sub, decision, data, o)
	}
	if decision.Verdict != policy.Run {
		n.log.Info("service refused", logService, m.Name, "version", m.Version, "verdict", decision.Verdict)
		e := decisionError(m, decision).(*server.Error)
		e.Receipt = n.receipt(pol, sub, decision)
		return api.SubmitResult{}, e
	}
	if err := n.checkCapacity(ctx, pol, m.Name, view.Services, o.Origin); err != nil {
		return api.SubmitResult{}, err
	}
	canon, err := json.Marshal(m)
	if err != nil {
		return api.SubmitResult{}, fmt.Errorf("encode manifest: %w", err)
	}
	rec := store.Service{
		Name: m.Name, Version: m.Version, Digest: info.Digest, Size: info.Size, Files: info.Files,
		Manifest: canon, Owner: p.Name, SubmittedAt: time.Now().UTC(), Target: m.Target,
		Decision: decision, Receipt: n.receipt(pol, sub, decision), Forwarded: o.Forwarded,
		Attestations: o.Attestations, Delegations: o.Delegations, Origin: o.Origin,
	}
	rec = withPhase(rec, api.PhaseStarted, true, "")
	if o.NoStart {
		rec = withPhase(rec, api.PhaseDeployed, true, "")
	}
	if exists && p.Operator() && prev.Owner != "" {
		rec.Owner = prev.Owner // the operator replacing a submitter's service keeps its owner
	}
	if err := n.reviseOnSubmit(ctx, &rec, prev, exists, m, p.Name); err != nil {
		return api.SubmitResult{}, err
	}
	if err := n.store.PutArtifact(ctx, info.Digest, data); err != nil {
		return api.SubmitResult{}, err
	}
	final := n.serviceDir(rec)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return api.SubmitResult{}, err
	}
	os.RemoveAll(final) // a leftover of an earlier failed deploy
	if err := os.Rename(dir, final); err != nil {
		return api.SubmitResult{}, fmt.Errorf("install service dir: %w", err)
	}
	d, err := n.prepare(ctx, rec, m, final)
	if err != nil {
		removeServiceDir(final)
		return api.SubmitResult{}, server.Errorf(server.ErrUnusable, "%v", err)
	}
	if n.place != nil {
		// Placed here before it is recorded: the node that ran the
		// version it replaces gives that one up.
		if err := n.place.put(ctx, rec.Name, placeSubmitted); err != nil {
			n.stopDeployment(d)
			removeServiceDir(final)
			return api.SubmitResult{}, err
		}
	}
	if err := n.store.PutService(ctx, rec); err != nil {
		n.stopDeployment(d)
		removeServiceDir(final)
		return api.SubmitResult{}, err
	}
	n.regIndex.put(rec.Name, rec.Target)
	n.notify(rec.Owner, api.WatchEvent{Kind: api.WatchAdmitted, Service: rec.Name, Version: rec.Version, Phase: api.PhaseAdmitted})
	n.notify(rec.Owner, api.WatchEvent{Kind: api.WatchDeployed, Service: rec.Name, Version: rec.Version, Phase: api.PhaseDeployed})
	if o.NoStart {
		n.replaceStopped(d)
	} else {
		d.life.set(api.PhaseStarted)
		n.activate(d)
		n.notify(rec.Owner, api.WatchEvent{Kind: api.WatchStarted, Service: rec.Name, Version: rec.Version, Phase: api.PhaseStarted})
	}
	n.log.Info("service admitted", logService, rec.Name, "version", rec.Version, "digest", rec.Digest, "driver", decision.Driver, "status", rec.Status, "owner", rec.Owner, "policy", pol.Digest())
	submitter := p.Name
	if o.Forwarded != nil {
		submitter = o.Forwarded.Submitter
	}
	n.advertise(pol, sub, decision, data, o, submitter)
	return api.SubmitResult{Service: n.view(rec)}, nil
}

// submission is what admission looks at for m.
func (n *Node) submission(ctx context.Context, m *manifest.Service, digest string, size int64, o api.SubmitOptions) (policy.Submission, error) {
	return policy.Submission{Manifest: m, Digest: digest, PayloadSize: size, Attestations: o.Attestations, Delegations: o.Delegations, Origin: o.Origin}, nil
}

// prepare deploys an admitted service now, or only records it when the
// decision says dormant: it deploys on its first trigger.
func (n *Node) prepare(ctx context.Context, rec store.Service, m *manifest.Service, dir string) (*deployed, error) {
	if !rec.Decision.Dormant {
		return n.deploy(ctx, rec, m, dir)
	}
	d := n.newDeployed(rec, m, dir, nil)
	return d, nil
}

// deploy turns an admitted manifest into a running deployment. Its long
// steps (dependency installs, image pulls) are service.progress events.
func (n *Node) deploy(ctx context.Context, rec store.Service, m *manifest.Service, dir string) (*deployed, error) {
	ctx = n.withProgress(ctx, rec)
	ds, ok := n.drivers[rec.Decision.Driver]
	if err := ds.wait(ctx); err != nil {
		return nil, fmt.Errorf("deploy %s: waiting for driver %s's self-test: %w", rec.Name, rec.Decision.Driver, err)
	}
	if on, _ := ds.status(); !ok || !on {
		return nil, fmt.Errorf("deploy %s: driver %s is not available on this node", rec.Name, rec.Decision.Driver)
	}
	spec := n.specFor(rec, m, dir)
	if err := makeVolumes(spec.Volumes); err != nil {
		return nil, fmt.Errorf("deploy %s: %w", rec.Name, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	dep, err := safeDeploy(dctx, ds.driver, spec)
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", rec.Name, err)
	}
	if _, err := n.deployTest(dctx, rec.Name, dep); err != nil {
		return nil, fmt.Errorf("deploy %s: %w", rec.Name, err)
	}
	return n.newDeployed(rec, m, dir, dep), nil
}

// safeDeploy is d.Deploy with any panic in the driver turned into an
// error: what a service is never takes the node down.
func safeDeploy(ctx context.Context, d sandbox.Driver, spec sandbox.Spec) (dep sandbox.Deployment, err error) {
	defer func() {
		if p := recover(); p != nil {
			dep, err = nil, fmt.Errorf("driver %s panicked: %v", d.Name(), p)
		}
	}()
	return d.Deploy(ctx, spec)
}

// removeServiceDir removes an unpacked service and, when that leaves it
// empty, the service's own directory: a refused submission leaves nothing
// behind, so refusals cannot pile up directories.
func removeServiceDir(dir string) {
	os.RemoveAll(dir)
	os.Remove(filepath.Dir(dir)) // fails, harmlessly, unless empty
}

// newDeployed is the node's handle on a service; dep is nil for a dormant
// service until its first trigger.
func (n *Node) newDeployed(rec store.Service, m *manifest.Service, dir string, dep sandbox.Deployment) *deployed {
	lim := rec.Decision.Limits
	d := &deployed{
		rec:      rec,
		manifest: m,
		dir:      dir,
		dep:      dep,
		sem:      make(chan struct{}, max(1, lim.Concurrency)),
		health:   health.New(health.Config{}),
	}
	d.life.set(api.PhaseDeployed)
	d.triggers, d.manual, d.manualName = triggerSpecs(m)
	if lead := n.prewarmLead(m, dep == nil); lead > 0 {
		for i := range d.triggers {
			d.triggers[i].Lead = lead
		}
	}
	d.live.Store(&liveConfig{revision: rec.Revision, config: m.Config})
	d.volumes = n.volumeSpecs(rec.Name, m)
	return d
}

// ensureDeployed deploys a dormant service on its first trigger.
func (n *Node) ensureDeployed(ctx context.Context, d *deployed) (sandbox.Deployment, error) {
	d.deployMu.Lock()
	defer d.deployMu.Unlock()
	if d.dep != nil {
		return d.dep, nil
	}
	live, err := n.deploy(ctx, d.rec, d.manifest, d.dir)
	if err != nil {
		return nil, err
	}
	d.dep = live.dep
	n.log.Info("dormant service deployed on its first trigger", logService, d.rec.Name)
	if d.rec.Status == statusDormant {
		d.rec = withPhase(d.rec, recordPhase(d.rec), false, "")
		if err := n.store.PutService(ctx, d.rec); err != nil {
			n.log.Warn("record deployed status", logService, d.rec.Name, logErr, err)
		}
	}
	return d.dep, nil
}

// activate makes d the running version of its service and retires the old
// one.
func (n *Node) activate(d *deployed) {
	n.mu.Lock()
	old := n.services[d.rec.Name]
	n.services[d.rec.Name] = d
	n.mu.Unlock()
	n.catchUp(d, time.Now())
	if err := n.sched.Set(d.rec.Name, d.triggers); err != nil {
		n.log.Error("schedule triggers", logService, d.rec.Name, logErr, err)
	}
	n.switchEvents(d)
	if old != nil {
		go func() {
			n.stopDeployment(old)
			if old.dir != d.dir {
				os.RemoveAll(old.dir)
			}
		}()
	}
}

func (n *Node) stopDeployment(d *deployed) {
	d.deployMu.Lock()
	defer d.deployMu.Unlock()
	if d.dep == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.dep.Stop(ctx); err != nil {
		n.log.Warn("stop deployment", logService, d.rec.Name, logErr, err)
	}
}

// stopServices waits for runs in flight (up to 10 s) and stops every
// deployment.
func (n *Node) stopServices() error {
	done := make(chan struct{})
	go func() { n.runs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.log.Warn("runs still in flight at shutdown; stopping their deployments")
	}
	n.mu.Lock()
	all := n.services
	n.services = map[string]*deployed{}
	n.mu.Unlock()
	for _, d := range all {
		n.stopDeployment(d)
	}
	return nil
}

// restore brings every registered service back to its phase at start
// (restorePhase). A service that fails to deploy is marked failed with the
// reason; it does not stop the node.
func (n *Node) restore(ctx context.Context) error {
	recs, err := n.store.Services(ctx)
	if err != nil {
		return err
	}
	if n.place != nil {
		// In a cluster: only those placed here, or held by no live node
		// and claimed here.
		var here []store.Service
		for _, rec := range recs {
			if n.restoreHere(ctx, rec) {
				here = append(here, rec)
			}
		}
		recs = here
	}
	// Side by side, a few at a time: each waits mostly on its driver
	// (a self-test still running, a worker starting).
	sem := make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0)))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, rec := range recs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := n.restorePhase(ctx, rec); err != nil {
				if err := n.markFailed(ctx, rec, fmt.Errorf("restore: %w", err)); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				return
			}
			n.placedElsewhereMeanwhile(rec.Name)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Remove implements server.Backend: RemoveService keeping the runs.
func (n *Node) Remove(ctx context.Context, name string) error {
	return n.RemoveService(ctx, name, false)
}

// Services implements server.Backend: the operator sees all, a submitter
// its own.
func (n *Node) Services(ctx context.Context, p server.Principal) ([]api.Service, error) {
	recs, err := n.store.Services(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Service, 0, len(recs))
	for _, r := range recs {
		if p.Operator() || r.Owner == p.Name {
			out = append(out, n.view(r))
		}
	}
	return out, nil
}

// Service implements server.Backend. A submitter asking for another's
// service is told it is not found, not that it is forbidden, so names do
// not leak.
func (n *Node) Service(ctx context.Context, p server.Principal, name string) (api.Service, error) {
	rec, err := n.owned(ctx, p, name)
	if err != nil {
		return api.Service{}, err
	}
	return n.view(rec), nil
}

// owned is the record of a service p may see: its own, or any for the
// operator; another's is not found.
func (n *Node) owned(ctx context.Context, p server.Principal, name string) (store.Service, error) {
	rec, err := n.store.Service(ctx, name)
	if err != nil {
		return store.Service{}, err
	}
	if !p.Operator() && rec.Owner != p.Name {
		return store.Service{}, fmt.Errorf("service %q: %w", name, store.ErrNotFound)
	}
	return rec, nil
}

// view adds the live parts (health, next trigger times) to a record.
func (n *Node) view(r store.Service) api.Service {
	rec := apiService(r)
	if n.place != nil {
		if pl, ok := n.place.get(rec.Name); ok {
			rec.Node = pl.Node
		}
	}
	d := n.lookup(rec.Name)
	if d == nil || d.rec.Digest != rec.Digest {
		return rec
	}
	st := d.health.State()
	rec.Health = &api.Health{Healthy: st.Healthy, ConsecutiveFailures: st.Failures, SkipUntil: st.SkipUntil}
	d.deployMu.Lock()
	dep := d.dep
	d.deployMu.Unlock()
	if hr, ok := dep.(sandbox.HealthReporter); ok {
		if healthy, reason := hr.Health(); !healthy {
			rec.Health.Healthy, rec.Health.LastError = false, reason
		}
	}
	rec.Placement = placementOf(dep)
	next := n.sched.Next(rec.Name)
	for i, t := range d.triggers {
		ti := api.TriggerInfo{Name: trigger.Name(i), Kind: t.Kind, Spec: t.String()}
		if i < len(next) {
			ti.Next = next[i]
		}
		rec.Triggers = append(rec.Triggers, ti)
	}
	return rec
}

func (n *Node) serviceDir(rec store.Service) string {
	return filepath.Join(n.cfg.Data, "services", rec.Name, strings.TrimPrefix(rec.Digest, "sha256:")[:16]+"-"+rec.Version)
}

func (n *Node) tempDir(kind string) (string, error) {
	base := filepath.Join(n.cfg.Data, "tmp")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(base, kind+"-")
}
