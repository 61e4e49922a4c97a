package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// placements is where the cluster runs each service: the placement bucket
// (service name → the node that runs it), watched by every node. A node
// runs a service only while the bucket names it; it takes over the
// services of a node declared lost (or left) by a compare-and-set on
// their entries, so exactly one node wins each; it gives up a service
// whose entry names another node. Only in a cluster.
type placements struct {
	n     *Node
	kv    jetstream.KeyValue
	ticks jetstream.KeyValue // cron ticks claimed: one node fires each
	// tickStream is the ticks bucket's stream, read for the first claim
	// of a tick (firstClaim).
	tickStream jetstream.Stream

	mu      sync.Mutex
	seen    map[string]placed // service → its entry as last seen
	applied uint64            // the highest revision the watch delivered
	refused map[string]string // service → why this node's policy keeps it from taking it over (noteRefusal)

	wmu    sync.Mutex // the watch is made again by the heartbeat loop
	watch  jetstream.KeyWatcher
	closed bool
	done   sync.WaitGroup
	giving sync.WaitGroup // services being given up
}

// placed is one placement entry.
type placed struct {
	Node   string    `json:"node"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	rev    uint64
}

// Placement reasons.
const (
	placeSubmitted = "submitted here"
	placeRestored  = "no live node held it when this one started"
	placeTakenOver = "taken over from "
)

// tickClaimAge is how long a claimed tick is remembered: longer than any
// catch-up reaches back for a tick another node may have fired.
const tickClaimAge = 24 * time.Hour

// openPlacements opens the placement and tick-claim buckets and watches
// the placements; the services placed here are deployed by restore.
func (n *Node) openPlacements(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.Cluster.Wait.Std())
	defer cancel()
	kv, err := n.bus.JS.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketPlacement, Description: "placement: service name → the node of the cluster that runs it",
		History: 1, Storage: jetstream.FileStorage, Replicas: n.bus.Replicas(),
	})
	if err != nil {
		return fmt.Errorf("cluster: bucket %s: %w", bus.BucketPlacement, err)
	}
	// Every claim of a tick is kept (history): the first one stored fires
	// it (firstClaim).
	ticks, err := n.bus.JS.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketTickClaims, Description: "cron ticks claimed: service.trigger.tick → the node that fires it",
		History: jetstream.KeyValueMaxHistory, Storage: jetstream.FileStorage, Replicas: n.bus.Replicas(), TTL: tickClaimAge,
	})
	if err != nil {
		return fmt.Errorf("cluster: bucket %s: %w", bus.BucketTickClaims, err)
	}
	var tickStream jetstream.Stream
	err = untilAnswered(cctx, func() error { tickStream, err = n.bus.JS.Stream(cctx, "KV_"+bus.BucketTickClaims); return err })
	if err != nil {
		return fmt.Errorf("cluster: bucket %s: %w", bus.BucketTickClaims, err)
	}
	p := &placements{n: n, kv: kv, ticks: ticks, tickStream: tickStream, seen: map[string]placed{}}
	var w jetstream.KeyWatcher
	err = untilAnswered(cctx, func() error { w, err = kv.WatchAll(context.Background()); return err })
	if err != nil {
		return fmt.Errorf("cluster: watch %s: %w", bus.BucketPlacement, err)
	}
	p.watch = w
	initial := make(chan struct{})
	p.done.Add(1)
	go p.follow(w, initial)
	select {
	case <-initial:
	case <-cctx.Done():
		w.Stop()
		return fmt.Errorf("cluster: watch %s: %w", bus.BucketPlacement, cctx.Err())
	}
	if err := p.caughtUp(cctx); err != nil {
		p.close()
		return err
	}
	n.place = p
	return nil
}

// caughtUp waits until the placement watch has delivered every entry the
// stream's leader holds (watchCaughtUp).
func (p *placements) caughtUp(ctx context.Context) error {
	applied := func() uint64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.applied
	}
	if err := watchCaughtUp(ctx, p.kv, applied, p.rewatch, p.n.log); err != nil {
		return fmt.Errorf("cluster: watch %s: %w", bus.BucketPlacement, err)
	}
	return nil
}

// follow applies the placement watch's updates: an entry that names
// another node makes this one give the service up; one that names this
// node (a takeover by a compare-and-set it won, seen again) needs
// nothing, the winner deploys. initial is closed once the entries there
// at the start are in.
func (p *placements) follow(w jetstream.KeyWatcher, initial chan struct{}) {
	defer p.done.Done()
	once := sync.OnceFunc(func() { close(initial) })
	defer once()
	for e := range w.Updates() {
		if e == nil {
			once()
			continue
		}
		name := e.Key()
		p.mu.Lock()
		p.applied = max(p.applied, e.Revision())
		p.mu.Unlock()
		if e.Operation() != jetstream.KeyValuePut {
			p.mu.Lock()
			delete(p.seen, name)
			p.mu.Unlock()
			p.giveUp(name, "its placement was removed")
			continue
		}
		var pl placed
		if json.Unmarshal(e.Value(), &pl) != nil {
			p.n.log.Warn("cluster: unreadable placement ignored", logService, name)
			continue
		}
		pl.rev = e.Revision()
		p.mu.Lock()
		if old, ok := p.seen[name]; ok && old.rev > pl.rev {
			p.mu.Unlock()
			continue
		}
		p.seen[name] = pl
		p.mu.Unlock()
		if pl.Node != p.n.cfg.Name {
			p.giveUp(name, "placed on node "+pl.Node)
		}
	}
}

// close stops the watch.
func (p *placements) close() error {
	p.wmu.Lock()
	p.closed = true
	p.watch.Stop()
	p.wmu.Unlock()
	p.done.Wait()
	p.giving.Wait()
	return nil
}

// giveUp gives service up here, in a goroutine of its own: a halt waits
// for runs in flight, and the watch (and the heartbeat loop that may make
// it again) must not.
func (p *placements) giveUp(service, why string) {
	if p.n.lookup(service) == nil {
		return
	}
	p.giving.Go(func() { p.n.giveUp(service, why) })
}

// rewatch makes the watch again: its consumer may have gone with a server
// of the cluster. The new watch delivers every entry's latest (deletions
// too), which follow applies over what it has.
func (p *placements) rewatch() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.closed {
		return
	}
	w, err := p.kv.WatchAll(context.Background())
	if err != nil {
		p.n.log.Warn("cluster: placement watch not made again; later", logErr, err)
		return
	}
	p.watch.Stop()
	p.done.Wait()
	p.watch = w
	p.done.Add(1)
	go p.follow(w, make(chan struct{}))
}

// get is service's placement as last seen.
func (p *placements) get(service string) (placed, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl, ok := p.seen[service]
	return pl, ok
}

// put places service on this node (a submission here), whoever held it.
func (p *placements) put(ctx context.Context, service, reason string) error {
	b, _ := json.Marshal(placed{Node: p.n.cfg.Name, At: time.Now().UTC(), Reason: reason})
	rev, err := p.kv.Put(ctx, service, b)
	if err != nil {
		return fmt.Errorf("cluster: place %s here: %w", service, err)
	}
	p.remember(service, placed{Node: p.n.cfg.Name, Reason: reason, rev: rev})
	return nil
}

// claim places service on this node if its entry is still the one seen
// (rev 0: none), and reports whether it won.
func (p *placements) claim(ctx context.Context, service string, rev uint64, reason string) (bool, error) {
	b, _ := json.Marshal(placed{Node: p.n.cfg.Name, At: time.Now().UTC(), Reason: reason})
	var err error
	var got uint64
	if rev == 0 {
		got, err = p.kv.Create(ctx, service, b)
	} else {
		got, err = p.kv.Update(ctx, service, b, rev)
	}
	switch {
	case err == nil:
		p.remember(service, placed{Node: p.n.cfg.Name, Reason: reason, rev: got})
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists), isWrongSequence(err):
		return false, nil // another node's claim came first
	}
	return false, fmt.Errorf("cluster: claim %s: %w", service, err)
}

// isWrongSequence reports a compare-and-set that lost.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

func (p *placements) remember(service string, pl placed) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.seen[service]; !ok || old.rev < pl.rev {
		p.seen[service] = pl
	}
}

// remove drops service's placement (the service is removed).
func (p *placements) remove(ctx context.Context, service string) {
	if err := p.kv.Delete(ctx, service); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		p.n.log.Warn("cluster: remove placement", logService, service, logErr, err)
	}
}

// held counts the placements on each node.
func (p *placements) held() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for _, pl := range p.seen {
		out[pl.Node]++
	}
	return out
}

// giveUp stops this node's deployment of service, if it has one, without
// touching the service's record, state or durable consumers: another node
// runs it now, or it is gone.
func (n *Node) giveUp(service, why string) {
	n.mu.RLock()
	d := n.services[service]
	n.mu.RUnlock()
	if d == nil {
		return
	}
	unlock := n.lockService(service)
	defer unlock()
	n.mu.Lock()
	if n.services[service] != d {
		n.mu.Unlock()
		return
	}
	delete(n.services, service)
	n.mu.Unlock()
	n.halt(d, n.stopGrace())
	os.RemoveAll(filepath.Join(n.cfg.Data, "services", service))
	n.metrics.forget(service)
	n.log.Info("cluster: service given up here", logService, service, "why", why)
}

// whereIs says where service runs, for an answer refusing to run it here.
func (n *Node) whereIs(service string) string {
	if n.place == nil {
		return ""
	}
	pl, ok := n.place.get(service)
	if !ok || pl.Node == n.cfg.Name {
		return ""
	}
	if c, ok := n.reg.node(pl.Node); ok {
		return fmt.Sprintf("service %s runs on node %s (%s, API %s)", service, pl.Node, c.Health, c.API)
	}
	return fmt.Sprintf("service %s runs on node %s", service, pl.Node)
}

// restoreHere reports whether this node restores rec at its start: it is
// placed here, or held by no live node and this node wins its claim. A
// service held by a live node is that node's. A claim the store did not
// answer is logged and left to failover, which tries again at every
// heartbeat: it does not fail the start.
func (n *Node) restoreHere(ctx context.Context, rec store.Service) bool {
	pl, ok := n.place.get(rec.Name)
	if ok && pl.Node == n.cfg.Name {
		return true
	}
	if ok {
		if c, found := n.reg.claimView()[pl.Node]; found && c.Health != api.NodeLost && c.Health != api.NodeLeft {
			return false
		}
	}
	if !n.runsDriver(rec.Decision.Driver) || !hasLabels(n.cfg.Cluster.Labels, placementAsked(rec).Labels) {
		return false
	}
	if why, err := n.refusesTakeOver(ctx, rec); err != nil || why != "" {
		if why != "" {
			n.place.noteRefusal(rec.Name, why)
		}
		return false // judged again by failover
	}
	won, err := n.place.claim(ctx, rec.Name, pl.rev, placeRestored)
	if err != nil {
		n.log.Warn("cluster: service not claimed at start; failover tries again", logService, rec.Name, logErr, err)
	}
	if won {
		n.log.Info("cluster: service placed here", logService, rec.Name, "was_on", pl.Node)
	}
	return won
}

// runsDriver reports whether this node has driver, enabled or still in
// its self-test at start.
func (n *Node) runsDriver(driver string) bool {
	ds, ok := n.drivers[driver]
	if !ok {
		return false
	}
	<-ds.tested
	on, _ := ds.status()
	return on
}

// failover takes over, at each heartbeat, the services placed on nodes
// declared lost or left, or draining. Every live node that runs a
// service's driver and has the labels its placement asks for is a
// candidate; they take turns, one heartbeat apart, in an order every
// node computes alike (fewest services held first, then a hash of node
// and service), so the first in turn claims it and the others find it
// claimed; one that cannot (gone itself, its claim refused) leaves it to
// the next. A node that cannot store its own heartbeat takes nothing.
func (n *Node) failover(ctx context.Context) {
	p, r := n.place, n.reg
	// Each read and claim is bounded by a few heartbeats: while a stream
	// elects a leader they may wait, and one pass waiting out a minute
	// would hold every takeover back (passes run one at a time). What
	// times out is tried again by the next pass.
	step := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, max(2*time.Second, 2*r.hb))
	}
	if p == nil || !r.fresh() {
		return
	}
	nodes := r.claimView()
	p.mu.Lock()
	var orphans, adopt []string
	for service, pl := range p.seen {
		if c, ok := nodes[pl.Node]; !ok || c.Health != api.NodeUp {
			orphans = append(orphans, service)
		} else if pl.Node == n.cfg.Name && n.lookup(service) == nil && n.reg.draining.Load() == 0 {
			adopt = append(adopt, service)
		}
	}
	p.mu.Unlock()
	// Placed here and not running here: a takeover whose deploy failed
	// (the store unanswered during an election). Nobody else would run
	// it: deploy it again, after the orphans, so that a deploy that takes
	// long never holds a lost node's services back.
	defer func() {
		for _, service := range adopt {
			sctx, cancel := step()
			rec, err := n.store.Service(sctx, service)
			cancel()
			if err != nil {
				continue // removed, or the store does not answer yet
			}
			if err := n.takeOver(ctx, rec); err != nil {
				n.log.Warn("cluster: service placed here, not deployed yet; next heartbeat", logService, service, logErr, err)
			} else if n.lookup(service) != nil {
				n.log.Info("cluster: service placed here deployed", logService, service)
			}
		}
	}()
	if len(orphans) == 0 {
		return
	}
	held := p.held()
	slices.Sort(orphans)
	var won []takenOver
	for _, service := range orphans {
		pl, ok := p.get(service)
		if !ok {
			continue
		}
		gone, known := nodes[pl.Node]
		sctx, cancel := step()
		rec, err := n.store.Service(sctx, service)
		cancel()
		if errors.Is(err, store.ErrNotFound) {
			p.remove(ctx, service) // a placement left behind by a removal
			continue
		}
		if err != nil {
			n.log.Warn("cluster: failover: read service", logService, service, logErr, err)
			continue
		}
		var cands []api.ClusterNode
		labels := placementAsked(rec).Labels
		for _, c := range nodes {
			if c.Health == api.NodeUp && slices.Contains(c.Drivers, rec.Decision.Driver) && hasLabels(c.Labels, labels) {
				cands = append(cands, c)
			}
		}
		slices.SortFunc(cands, func(a, b api.ClusterNode) int {
			if ha, hb := held[a.Name], held[b.Name]; ha != hb {
				return ha - hb
			}
			return int(turnHash(a.Name, service)) - int(turnHash(b.Name, service))
		})
		turn := slices.IndexFunc(cands, func(c api.ClusterNode) bool { return c.Name == n.cfg.Name })
		if turn < 0 {
			continue
		}
		// Since when the node is gone: its left entry, or lost_after past
		// its last heartbeat.
		since := time.Now()
		if known {
			since = goneSince(gone, r.lost)
		}
		if time.Since(since) < time.Duration(turn)*r.hb {
			continue
		}
		sctx, cancel = step()
		why, err := n.refusesTakeOver(sctx, rec)
		cancel()
		if err != nil {
			n.log.Debug("cluster: failover: not judged yet", logService, service, logErr, err)
			continue
		}
		if why != "" {
			p.noteRefusal(service, why) // the next in turn takes it
			continue
		}
		sctx, cancel = step()
		claimed, err := p.claim(sctx, service, pl.rev, placeTakenOver+pl.Node)
		cancel()
		if err != nil {
			n.log.Warn("cluster: failover: claim", logService, service, logErr, err)
			continue
		}
		if !claimed {
			continue
		}
		held[n.cfg.Name]++
		n.log.Warn("cluster: service taken over", logService, service, "from", pl.Node, "health", gone.Health)
		won = append(won, takenOver{rec, pl.Node, gone.Health})
	}
	// Deployed side by side, then the runs in flight on a lost node
	// recorded, once all run again: a node that takes dozens of services
	// over runs each again within a heartbeat or two, not one after
	// another (the lost runs' lookup alone is dozens of reads a service).
	each(won, takeOverWorkers, func(t takenOver) {
		if err := n.takeOver(ctx, t.rec); err != nil {
			n.log.Error("cluster: service taken over but not restored here", logService, t.rec.Name, logErr, err)
		}
	})
	each(won, takeOverWorkers, func(t takenOver) {
		rctx, cancel := context.WithTimeout(ctx, max(10*time.Second, 5*r.hb))
		defer cancel()
		if t.health == api.NodeLost {
			n.recordLost(rctx, t.rec, t.from)
		}
		// The executions of the service's runs that node had open are
		// sent from here on; a draining node still sends its own.
		if t.health == api.NodeLost || t.health == api.NodeLeft {
			if err := n.exec.adopt(rctx, t.rec.Name, t.from); err != nil {
				n.log.Warn("cluster: the open executions of a service taken over not taken; its node's restart resumes them", logService, t.rec.Name, "from", t.from, logErr, err)
			}
		}
	})
}

// each calls f on every item, at most workers at once, and returns when
// all have returned.
func each[T any](items []T, workers int, f func(T)) {
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(it)
		})
	}
	wg.Wait()
}

// takeOverWorkers is how many services a failover pass deploys (or looks
// up the lost runs of) at once: a deploy mostly waits on the store.
const takeOverWorkers = 16

// takenOver is a service a failover pass claimed, from node from.
type takenOver struct {
	rec    store.Service
	from   string
	health string // from's, when it was taken: lost, left or draining
}

// refusesTakeOver judges rec by this node's own policy, as it was
// submitted (its attestations, delegations and origin are in the record),
// before this node takes it over: a node never runs what its own policy
// refuses. It returns why not, or "" when the verdict is run. The
// decision the service runs with stays the one it was admitted with.
func (n *Node) refusesTakeOver(ctx context.Context, rec store.Service) (string, error) {
	m, err := previousManifest(rec)
	if err != nil {
		return err.Error(), nil
	}
	view, err := n.policyView(ctx, rec.Decision.Driver)
	if err != nil {
		return "", err // not judged yet: tried again
	}
	if view.Targets[m.Target] == rec.Name {
		delete(view.Targets, m.Target) // its own
	}
	sub := policy.Submission{Manifest: m, Digest: rec.Digest, PayloadSize: rec.Size,
		Attestations: rec.Attestations, Delegations: rec.Delegations, Origin: rec.Origin}
	who := server.Principal{Name: rec.Owner, Role: api.RoleSubmitter}
	if rec.Owner == operatorOwner {
		who.Role = api.RoleOperator
	}
	pol := n.Policy()
	if limit := pol.Policy().Limits.Services; limit > 0 && view.Services >= limit {
		return fmt.Sprintf("this node is at its bound of %d services (limits.services)", limit), nil
	}
	d := n.decide(ctx, who, pol, &sub, view)
	if d.Verdict == policy.Run {
		// It runs under the decision it was admitted with: one this
		// node's policy would give other limits or another driver is
		// not run here as if it were its own.
		switch {
		case d.Driver != rec.Decision.Driver:
			return fmt.Sprintf("this node's policy would run it on driver %s, not %s", d.Driver, rec.Decision.Driver), nil
		case !reflect.DeepEqual(d.Limits, rec.Decision.Limits):
			return fmt.Sprintf("this node's policy would give it other limits (%+v, not %+v)", d.Limits, rec.Decision.Limits), nil
		}
		return "", nil
	}
	var failed []string
	for _, r := range d.Reasons {
		if !r.OK {
			failed = append(failed, r.Rule+": "+r.Detail)
		}
	}
	return fmt.Sprintf("this node's policy says %s (%s)", d.Verdict, strings.Join(failed, "; ")), nil
}

// noteRefusal logs, once for each reason, that this node's policy keeps it
// from taking service over.
func (p *placements) noteRefusal(service, why string) {
	p.mu.Lock()
	if p.refused == nil {
		p.refused = map[string]string{}
	}
	seen := p.refused[service] == why
	p.refused[service] = why
	p.mu.Unlock()
	if !seen {
		p.n.log.Warn("cluster: not taking the service over: this node's policy refuses it; the next node in turn may", logService, service, "why", why)
	}
}

// turnHash orders the candidates of a service.
func turnHash(node, service string) uint16 {
	h := fnv.New32a()
	h.Write([]byte(node + "\x00" + service))
	return uint16(h.Sum32())
}

// takeOver deploys rec here as restore would.
func (n *Node) takeOver(ctx context.Context, rec store.Service) error {
	err := func() error {
		unlock := n.lockService(rec.Name)
		defer unlock()
		if n.lookup(rec.Name) != nil {
			return nil
		}
		return n.restorePhase(ctx, rec)
	}()
	if err == nil {
		n.placedElsewhereMeanwhile(rec.Name)
	}
	return err
}

// placedElsewhereMeanwhile gives service up here when, deployed here, it
// is no longer placed here: submitted again at another node while its
// deploy (an install, a pull) took long. The placement watch gave it up
// then, before it ran here, which did nothing; nothing else would.
func (n *Node) placedElsewhereMeanwhile(service string) {
	if n.place == nil {
		return
	}
	if pl, ok := n.place.get(service); !ok || pl.Node != n.cfg.Name {
		n.place.giveUp(service, "placed on another node while it was deployed here")
	}
}

// claimTick claims cron tick ev in the cluster: true when this node fires
// it. A tick another node claimed is skipped quietly; one that cannot be
// claimed (this node cut off from a majority) is skipped and logged: a
// minority side fires no tick.
func (n *Node) claimTick(ev trigger.Event) bool {
	p := n.place
	if p == nil || ev.Kind != trigger.KindCron {
		return true
	}
	key := tickClaimKey(ev.Service, max(triggerIndex(ev.Trigger), 0), ev.At)
	ctx, cancel := context.WithTimeout(n.ctx, n.reg.hb)
	defer cancel()
	began := time.Now()
	rev, err := p.ticks.Create(ctx, key, []byte(n.cfg.Name))
	if err == nil {
		slow := time.Since(began) > slowClaim
		rctx, rcancel := context.WithTimeout(n.ctx, n.reg.hb+slowClaimSettle)
		defer rcancel()
		first, seq, err := p.firstClaim(rctx, key)
		if err == nil && seq == rev && slow {
			// A create this slow met an election of the claims stream,
			// whose new leader may take a create before it has applied
			// an older claim of the same tick: once it has settled, the
			// first claim is asked of it again.
			time.Sleep(slowClaimSettle)
			first, seq, err = p.leaderFirstClaim(rctx, "$KV."+bus.BucketTickClaims+"."+key)
		}
		switch {
		case err != nil:
			n.log.Warn("cluster: tick claimed, the claim not read back: not fired", logService, ev.Service, "at", ev.At, logErr, err)
			return false
		case seq != rev:
			n.log.Warn("cluster: tick claimed by two nodes across a leader change of the claims; the first fires it", logService, ev.Service, "at", ev.At, "first", first)
			return false
		}
		return true
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		n.log.Debug("cluster: tick fired by another node", logService, ev.Service, "at", ev.At)
		return false
	}
	n.log.Warn("cluster: tick not claimed, not fired: the cluster's store did not take the claim", logService, ev.Service, "at", ev.At, logErr, err)
	return false
}

// A tick claim whose create took longer than slowClaim met an election of
// the claims stream; its first claim is read again from the leader
// slowClaimSettle later. The tick is late by then in any case.
var (
	slowClaim       = 250 * time.Millisecond
	slowClaimSettle = time.Second
)

// firstClaim is the node whose claim of the tick key was stored first, and
// its revision. A create is a compare-and-set the stream's leader checks
// when it proposes the write, not when the write is applied: across a
// change of leader, a claim proposed by the old leader and one accepted by
// the new before it applied the old one's are both stored and both
// answered as created. The order of the stream is the same on every
// replica, so the first claim stored is the one that counts. A replica
// that has not yet applied the caller's own claim (a direct get may reach
// any) finds none, and is asked again.
func (p *placements) firstClaim(ctx context.Context, key string) (string, uint64, error) {
	subject := "$KV." + bus.BucketTickClaims + "." + key
	for {
		m, err := p.tickStream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
		if err == nil {
			return string(m.Data), m.Sequence, nil
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return "", 0, err
		}
		// The replica that answered is behind (just after an election,
		// for seconds): the stream's leader, which stored the claim,
		// answers instead.
		if node, seq, err := p.leaderFirstClaim(ctx, subject); err == nil {
			return node, seq, nil
		}
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// leaderFirstClaim asks the claims stream's leader (a message get, not a
// direct one) for the first message on subject.
func (p *placements) leaderFirstClaim(ctx context.Context, subject string) (string, uint64, error) {
	req, _ := json.Marshal(map[string]any{"seq": 1, "next_by_subj": subject})
	resp, err := p.n.bus.Conn.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+bus.BucketTickClaims, req)
	if err != nil {
		return "", 0, err
	}
	var r struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return "", 0, err
	}
	if r.Error != nil || r.Message == nil {
		return "", 0, jetstream.ErrMsgNotFound
	}
	return string(r.Message.Data), r.Message.Seq, nil
}

// runsSince lists the runs of service started since, as complete as the
// runs stream's leader has them: the listing's consumers may sit on a
// replica still catching up (after a kill, for seconds), and a run recorded
// by the lost node and missing there would be recorded again as lost. A
// listing that lacks the leader's latest record (when it is in the window)
// is read again.
func (n *Node) runsSince(ctx context.Context, service string, since time.Time) (store.RunList, error) {
	last, ok, err := n.store.LastRun(ctx, service)
	if err != nil {
		return store.RunList{}, err
	}
	for {
		page, err := n.store.ListServiceRuns(ctx, store.RunQuery{Since: since, Limit: store.MaxListRuns}, service)
		if err != nil {
			return page, err
		}
		if !ok || last.Start.Before(since) || slices.ContainsFunc(page.Runs, func(r store.Run) bool { return r.ID == last.ID }) {
			return page, nil
		}
		select {
		case <-ctx.Done():
			return store.RunList{}, fmt.Errorf("the runs listed lack run %s, the latest the stream's leader holds: %w", last.ID, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// lastClaimed is the newest tick of trigger i of service claimed in the
// cluster after since and at or before until (looking back ten minutes at
// most), by any node: a node taking a service over counts the ticks up to
// it as fired, not missed.
func (p *placements) lastClaimed(service string, i int, since, until time.Time) (time.Time, bool) {
	ctx, cancel := context.WithTimeout(p.n.ctx, max(2*time.Second, 2*p.n.reg.hb))
	defer cancel()
	since = later(since, until.Add(-10*time.Minute))
	var filters []string
	for m := since.Unix() / 60; m <= until.Unix()/60; m++ {
		filters = append(filters, service+"."+strconv.Itoa(i)+"."+strconv.FormatInt(m, 10)+".*")
	}
	keys, err := p.ticks.ListKeysFiltered(ctx, filters...)
	if err != nil {
		return time.Time{}, false
	}
	var last time.Time
	for k := range keys.Keys() {
		parts := strings.Split(k, ".")
		ms, err := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		if at := time.UnixMilli(ms); err == nil && at.After(since) && !at.After(until) && at.After(last) {
			last = at
		}
	}
	return last, !last.IsZero()
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// tickClaimKey is the tick claim of service's trigger i at at:
// <service>.<i>.<unix minute>.<unix ms>, so that the claims of a few
// minutes are listed by their minutes (recordLost).
func tickClaimKey(service string, i int, at time.Time) string {
	return service + "." + strconv.Itoa(i) + "." + strconv.FormatInt(at.Unix()/60, 10) + "." + strconv.FormatInt(at.UnixMilli(), 10)
}

// recordLost records, as lost, the cron runs of rec that node claimed
// (their ticks are in the tick claims) and never recorded: they were in
// flight when node was lost, and would otherwise vanish with it. It looks
// back as far as such a run could still have been running: the service's
// timeout, lost_after and some slack.
func (n *Node) recordLost(ctx context.Context, rec store.Service, node string) {
	p := n.place
	back := limitsOf(rec.Decision.Limits).Timeout + n.reg.lost + 30*time.Second
	since := time.Now().Add(-back)
	var filters []string
	for m := since.Unix() / 60; m <= time.Now().Unix()/60; m++ {
		filters = append(filters, rec.Name+".*."+strconv.FormatInt(m, 10)+".*")
	}
	keys, err := p.ticks.ListKeysFiltered(ctx, filters...)
	if err != nil {
		n.log.Warn("cluster: runs in flight on a lost node not looked for", logService, rec.Name, logErr, err)
		return
	}
	type claim struct {
		trigger int
		at      time.Time
	}
	var claims []claim
	for k := range keys.Keys() {
		parts := strings.Split(strings.TrimPrefix(k, rec.Name+"."), ".")
		if len(parts) != 3 {
			continue
		}
		i, err1 := strconv.Atoi(parts[0])
		ms, err2 := strconv.ParseInt(parts[2], 10, 64)
		at := time.UnixMilli(ms)
		if err1 != nil || err2 != nil || at.Before(since) {
			continue
		}
		if first, _, err := p.firstClaim(ctx, k); err == nil && first == node {
			claims = append(claims, claim{i, at})
		}
	}
	if len(claims) == 0 {
		return
	}
	page, err := n.runsSince(ctx, rec.Name, since.Add(-time.Minute))
	if err != nil {
		n.log.Warn("cluster: runs in flight on a lost node not looked for", logService, rec.Name, logErr, err)
		return
	}
	type tick struct {
		trigger string
		ms      int64
	}
	recorded := map[tick]bool{} // by trigger too: two triggers may tick at one instant
	for _, r := range page.Runs {
		if at, err := time.Parse(time.RFC3339Nano, r.Trigger.At); err == nil && r.Trigger.Kind == trigger.KindCron {
			recorded[tick{r.Trigger.Name, at.UnixMilli()}] = true
		}
	}
	for _, c := range claims {
		if recorded[tick{trigger.Name(c.trigger), c.at.UnixMilli()}] {
			continue
		}
		run := store.Run{
			ID: newRunID(), Service: rec.Name, Version: rec.Version, Owner: rec.Owner, Node: node,
			Trigger: contract.Trigger{Kind: trigger.KindCron, Name: trigger.Name(c.trigger), At: c.at.UTC().Format(time.RFC3339Nano)},
			Start:   c.at.UTC(), Outcome: string(sandbox.Lost), Digest: rec.Digest, Driver: rec.Decision.Driver,
			Error: fmt.Sprintf("node %s was lost while this run was in flight (it had claimed the tick and recorded no run); recorded by %s, which took the service over", node, n.cfg.Name),
		}
		if err := n.store.AppendRun(ctx, run); err != nil {
			n.log.Warn("cluster: a run lost with its node not recorded", logService, rec.Name, "tick", c.at, logErr, err)
			continue
		}
		n.log.Warn("cluster: run recorded as lost with its node", logService, rec.Name, "node", node, "tick", c.at)
	}
}
