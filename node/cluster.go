package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/server"
)

// registry is the node's entry in the node registry (bus.BucketNodes):
// written at start, at every heartbeat, and as left at a clean stop. Every
// node reads the others' there: who is in the cluster, where its API is,
// what it runs, and whether it is still alive.
type registry struct {
	n        *Node
	kv       jetstream.KeyValue
	hb, lost time.Duration
	// stored is when the last heartbeat was stored (unix nanoseconds).
	stored  atomic.Int64
	running atomic.Bool // start was called
	placing atomic.Bool // the node has started: failover at each heartbeat
	// failingOver is set while a failover pass runs; passes are waited
	// for at close.
	failingOver atomic.Bool
	passes      sync.WaitGroup
	// rewatching is set while a watch is made again (one at a time, beside
	// the heartbeats); passes waits for it too.
	rewatching atomic.Bool
	// flowing is set while a pass over the flows runs (cluster_flow.go).
	flowing atomic.Bool
	// api is the API's address once it listens; drivers is set once the
	// node's drivers are in place, to be read.
	api     atomic.Pointer[string]
	drivers atomic.Bool
	// draining is when Drain was called (unix nanoseconds), 0 if never.
	draining atomic.Int64

	// seen is the registry as the node's watch of it last saw it: node
	// name → entry and when it was stored. A watch goes on through a
	// cluster's elections, where a listing of the bucket may wait.
	seenMu sync.Mutex
	seen   map[string]seenNode
	// heard is when each node's last liveness beat arrived here (this
	// node's clock): a plain NATS message on andromeda.node.<name>.beat
	// with each heartbeat, which goes on while the cluster's streams elect
	// leaders (a stored heartbeat waits for them), and stops at once when
	// a node dies or is cut off.
	heard map[string]time.Time
	// hearing is since when this node hears beats: a node not heard since
	// is silent for no longer than that.
	hearing time.Time
	beats   *nats.Subscription
	watch   jetstream.KeyWatcher // replaced by one rewatch at a time (rewatching)
	// updated is when the watch last delivered (unix nanoseconds): every
	// heartbeat of every node is an update, so a watch quiet for a few
	// heartbeats lost its consumer (its server went) and is made again.
	updated atomic.Int64
	// applied is the highest revision the watch delivered.
	applied atomic.Uint64

	once sync.Once
	quit chan struct{}
	done chan struct{}
	// looking is closed when the failover loop (start) has ended.
	looking chan struct{}
	// stopPasses ends the failover passes in flight when the node stops:
	// one waiting out a cluster without a majority would hold the stop for
	// cluster.wait.
	passMu     sync.Mutex
	stopPasses context.CancelFunc
}

// openRegistry opens the node registry and writes the node's first entry.
// A live node of the same name with another key is refused: every node of
// a cluster needs its own name. A node alone forgets the entries of other
// names (an earlier host name of its own).
func (n *Node) openRegistry(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kv, err := n.bus.JS.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketNodes, Description: "node registry: node name → address, offer and state, at every heartbeat",
		History: 1, Storage: jetstream.FileStorage, Replicas: n.bus.Replicas(),
	})
	if err != nil {
		return fmt.Errorf("cluster: bucket %s: %w", bus.BucketNodes, err)
	}
	r := &registry{n: n, kv: kv, hb: n.cfg.Cluster.Heartbeat.Std(), lost: n.cfg.Cluster.LostAfter.Std(),
		quit: make(chan struct{}), done: make(chan struct{}), looking: make(chan struct{})}
	var e jetstream.KeyValueEntry
	err = untilAnswered(cctx, func() error { e, err = kv.Get(cctx, n.cfg.Name); return err })
	if err == nil {
		var other api.ClusterNode
		age := time.Since(e.Created())
		if json.Unmarshal(e.Value(), &other) == nil && other.Key != n.key.Public().String() && other.Health != api.NodeLeft && age < r.lost {
			return fmt.Errorf("cluster: name: node %q is already in the cluster with another key (%.16s…, its last heartbeat %.1fs ago): give each node its own name (config name)",
				n.cfg.Name, other.Key, age.Seconds())
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cluster: registry: %w", err)
	}
	if !n.cfg.clustered() {
		if keys, err := kv.ListKeys(cctx); err == nil {
			for k := range keys.Keys() {
				if k != n.cfg.Name {
					kv.Purge(cctx, k)
				}
			}
		}
	}
	r.heard, r.hearing = map[string]time.Time{}, time.Now()
	r.beats, err = n.bus.Conn.Subscribe(bus.NodeSubject("*", "beat"), func(m *nats.Msg) {
		name := strings.TrimSuffix(strings.TrimPrefix(m.Subject, bus.SubjectNodePrefix), ".beat")
		r.seenMu.Lock()
		r.heard[name] = time.Now()
		r.seenMu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("cluster: registry: hear heartbeats: %w", err)
	}
	if err := untilAnswered(cctx, func() error { return r.beat(cctx, api.NodeUp) }); err != nil {
		return fmt.Errorf("cluster: registry: first heartbeat: %w", err)
	}
	if err := untilAnswered(cctx, func() error { return r.startWatch(cctx) }); err != nil {
		return fmt.Errorf("cluster: registry: watch: %w", err)
	}
	// Judged by a stale copy, the nodes alive would look lost to this one
	// and it would take their services over at its start.
	remake := func() {
		if err := r.startWatch(cctx); err != nil {
			n.log.Warn("cluster: registry watch not made again; later", logErr, err)
		}
	}
	if err := watchCaughtUp(cctx, kv, r.applied.Load, remake, n.log); err != nil {
		r.watch.Stop()
		return fmt.Errorf("cluster: registry: watch: %w", err)
	}
	n.reg = r
	return nil
}

// watchCaughtUp waits until a watch of kv has delivered (applied) every
// entry the bucket's stream held when asked of its leader. A watch's
// consumer sits on any replica of the stream, and one still catching up
// (this node's own, just restarted) delivers what it holds as if it were
// all: a node starting on it would see the nodes alive as lost and the
// services placed elsewhere while it was away as its own. A watch that has
// not caught up within watchCatchUp is made again (remake), as its
// consumer may land on another replica.
func watchCaughtUp(ctx context.Context, kv jetstream.KeyValue, applied func() uint64, remake func(), log *slog.Logger) error {
	var last uint64
	err := untilAnswered(ctx, func() error {
		st, err := kv.Status(ctx) // the stream's leader answers
		if err != nil {
			return err
		}
		last = 0
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo().State.Msgs > 0 {
			last = bs.StreamInfo().State.LastSeq
		}
		return nil
	})
	if err != nil {
		return err
	}
	again := time.Now().Add(watchCatchUp)
	for {
		got := applied()
		if got >= last {
			return nil
		}
		if time.Now().After(again) {
			log.Warn("cluster: watch behind its stream's leader; made again", "bucket", kv.Bucket(), "revision", got, "leader_revision", last)
			remake()
			again = time.Now().Add(watchCatchUp)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watch at revision %d, the stream's leader at %d: %w", got, last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// watchCatchUp is how long a new watch may take to catch up with its
// stream's leader before it is made again.
const watchCatchUp = 3 * time.Second

// seenNode is one registry entry as watched.
type seenNode struct {
	node   api.ClusterNode
	stored time.Time
}

// startWatch watches the registry into r.seen, and returns once the
// entries there at the start are in. It replaces the watch there was.
func (r *registry) startWatch(ctx context.Context) error {
	w, err := r.kv.WatchAll(context.Background())
	if err != nil {
		return err
	}
	if r.watch != nil {
		r.watch.Stop()
	}
	if r.seen == nil {
		r.seen = map[string]seenNode{}
	}
	r.watch = w
	r.updated.Store(time.Now().UnixNano())
	initial := make(chan struct{})
	go func() {
		once := sync.OnceFunc(func() { close(initial) })
		defer once()
		for e := range w.Updates() {
			if e == nil { // the entries there at the start are in
				once()
				continue
			}
			r.updated.Store(time.Now().UnixNano())
			for a := r.applied.Load(); a < e.Revision() && !r.applied.CompareAndSwap(a, e.Revision()); a = r.applied.Load() {
			}
			r.seenMu.Lock()
			var c api.ClusterNode
			switch {
			case e.Operation() != jetstream.KeyValuePut:
				delete(r.seen, e.Key())
			case json.Unmarshal(e.Value(), &c) != nil:
				r.n.log.Warn("cluster: unreadable registry entry ignored", "node", e.Key())
			case e.Created().After(r.seen[e.Key()].stored):
				r.seen[e.Key()] = seenNode{node: c, stored: e.Created()}
			}
			r.seenMu.Unlock()
		}
	}()
	select {
	case <-initial:
		return nil
	case <-ctx.Done():
		w.Stop()
		return ctx.Err()
	}
}

// entry is the node as it writes itself to the registry.
func (r *registry) entry(health string) api.ClusterNode {
	n := r.n
	e := api.ClusterNode{
		Name: n.cfg.Name, Key: n.key.Public().String(), API: n.cfg.Listen, Version: Version,
		Labels: n.cfg.Cluster.Labels, Started: n.started.UTC(), Health: health,
		Drivers: []string{}, Languages: []string{},
	}
	if d := r.draining.Load(); d != 0 && health == api.NodeUp {
		since := time.Unix(0, d).UTC()
		e.Health, e.DrainingSince = api.NodeDraining, &since
	}
	if a := r.api.Load(); a != nil {
		e.API = *a
	}
	if c := n.cfg.Cluster; c.Name != "" {
		e.Cluster, e.Route = c.Name, c.Listen
	}
	n.mu.RLock()
	e.Services = len(n.services)
	n.mu.RUnlock()
	if pol := n.Policy(); pol != nil {
		e.ServicesMax = pol.Policy().Limits.Services
	}
	if !r.drivers.Load() {
		return e
	}
	langs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(n.drivers)) {
		ds := n.drivers[name]
		if on, _ := ds.status(); !on {
			continue
		}
		e.Drivers = append(e.Drivers, name)
		for l := range ds.driver.Offer().Languages {
			langs[l] = true
		}
	}
	e.Languages = slices.Sorted(maps.Keys(langs))
	return e
}

// beat stores the node's entry with health.
func (r *registry) beat(ctx context.Context, health string) error {
	b, err := json.Marshal(r.entry(health))
	if err != nil {
		return err
	}
	// The liveness beat first: plain NATS, which a stream's election does
	// not hold up.
	r.n.bus.Conn.Publish(bus.NodeSubject(r.n.cfg.Name, "beat"), []byte(health))
	if _, err := r.kv.Put(ctx, r.n.cfg.Name, b); err != nil {
		return err
	}
	r.stored.Store(time.Now().UnixNano())
	return nil
}

// rewatchEvery: the placement watch is made again every so many
// heartbeats, whatever it delivered: it can be quiet for good reasons, and
// its consumer can have gone with a server without a sign.
const rewatchEvery = 30

// rewatch makes the registry's watch again, and the placements', after
// the watch went quiet (a server that held its consumer went away).
func (r *registry) rewatch(why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*r.hb)
	defer cancel()
	if err := r.startWatch(ctx); err != nil {
		r.n.log.Warn("cluster: registry watch not made again; next heartbeat", "why", why, logErr, err)
		return
	}
	r.n.log.Info("cluster: registry watch made again", "why", why)
	if r.placing.Load() {
		r.n.place.rewatch()
	}
}

// refresh reads again each node's entry the watch has seen. A read is
// answered by any server holding a replica of the registry, also while
// the cluster elects a new leader for it, when the watch may wait for
// seconds (its consumer lived on the server that went).
func (r *registry) refresh(ctx context.Context) {
	r.seenMu.Lock()
	names := slices.Collect(maps.Keys(r.seen))
	r.seenMu.Unlock()
	for _, name := range names {
		e, err := r.kv.Get(ctx, name)
		if err != nil {
			continue
		}
		var c api.ClusterNode
		if json.Unmarshal(e.Value(), &c) != nil {
			continue
		}
		r.seenMu.Lock()
		if s, ok := r.seen[name]; ok && e.Created().After(s.stored) {
			r.seen[name] = seenNode{node: c, stored: e.Created()}
		}
		r.seenMu.Unlock()
	}
}

// listening records the API's address and writes it to the registry at
// once: once the node has started, the registry says where its API is.
func (r *registry) listening(ctx context.Context, addr string) error {
	r.api.Store(&addr)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.beat(cctx, api.NodeUp); err != nil {
		return fmt.Errorf("cluster: registry: %w", err)
	}
	return nil
}

// start writes a heartbeat every r.hb until close, from the node's first
// steps on (a node restoring many services is not lost meanwhile). A
// heartbeat that cannot be stored is logged once, and again when they are
// stored again.
func (r *registry) start() {
	r.running.Store(true)
	passing, stop := context.WithCancel(context.Background())
	r.passMu.Lock()
	r.stopPasses = stop
	r.passMu.Unlock()
	// Failover looks at the placements beside the heartbeats, four times
	// a heartbeat, one pass at a time: a node's loss is acted on within a
	// quarter heartbeat of lost_after, its reads and claims may wait out
	// an election, and the heartbeats must not wait with them.
	go func() {
		defer close(r.looking)
		t := time.NewTicker(max(r.hb/4, 50*time.Millisecond))
		defer t.Stop()
		for ticks := 0; ; ticks++ {
			select {
			case <-r.quit:
				return
			case <-t.C:
			}
			// The flows' pass runs once a heartbeat beside the services'
			// passes: a flow listing waiting out an election must not hold
			// a service's takeover back.
			if ticks%4 == 0 && r.placing.Load() && r.flowing.CompareAndSwap(false, true) {
				r.passes.Go(func() {
					defer r.flowing.Store(false)
					fctx, cancel := context.WithTimeout(passing, max(2*time.Second, 2*r.hb))
					defer cancel()
					r.n.flowPass(fctx)
				})
			}
			if r.placing.Load() && r.failingOver.CompareAndSwap(false, true) {
				r.passes.Go(func() {
					defer r.failingOver.Store(false)
					fctx, cancel := context.WithTimeout(passing, r.n.cfg.Cluster.Wait.Std())
					defer cancel()
					began := time.Now()
					r.n.failover(fctx)
					if took := time.Since(began); took > slowPass {
						r.n.log.Warn("cluster: a failover pass was slow; takeovers waited for it", "took_ms", ms(took))
					}
				})
			}
		}
	}()
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.hb)
		defer t.Stop()
		failing := false
		beats := 0
		for {
			select {
			case <-r.quit:
				return
			case <-t.C:
			}
			// A heartbeat may take longer than the interval (a replica
			// catching up, a loaded machine): it counts while it lands
			// well within lost_after.
			ctx, cancel := context.WithTimeout(context.Background(), max(r.hb, r.lost/3))
			err := r.beat(ctx, api.NodeUp)
			r.refresh(ctx)
			cancel()
			beats++
			// Watches are made again beside the heartbeats too: making one
			// waits out the election of its stream's leader (seconds when
			// the server that held it died), and failover must not wait.
			quiet := err == nil && time.Since(time.Unix(0, r.updated.Load())) > 3*r.hb
			if (quiet || beats%rewatchEvery == 0 && r.placing.Load()) && r.rewatching.CompareAndSwap(false, true) {
				r.passes.Go(func() {
					defer r.rewatching.Store(false)
					if quiet {
						r.rewatch("the registry's watch is quiet")
					} else {
						r.n.place.rewatch()
					}
				})
			}
			switch {
			case err != nil && !failing:
				failing = true
				r.n.log.Warn("cluster: heartbeat not stored; other nodes declare this one lost after lost_after without one",
					logErr, err, "lost_after", r.lost)
			case err == nil && failing:
				failing = false
				r.n.log.Info("cluster: heartbeats stored again")
			}
		}
	}()
}

// close stops the heartbeat and writes the node as left, so that the
// others need not wait for lost_after.
func (r *registry) close() error {
	r.once.Do(func() {
		close(r.quit)
		if r.running.Load() {
			select {
			case <-r.done:
			case <-time.After(r.hb + time.Second): // a beat hung
			}
			<-r.looking // no pass starts once passes are waited for
			r.haltPasses()
		}
		r.passes.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := r.beat(ctx, api.NodeLeft); err != nil {
			r.n.log.Warn("cluster: could not write this node as left; the others will declare it lost", logErr, err)
		}
		r.watch.Stop()
		r.beats.Unsubscribe()
	})
	return nil
}

// slowPass is how long a failover pass may take before it is logged: the
// next pass waits for it.
const slowPass = 10 * time.Second

// haltPasses ends the failover passes in flight; the passes started later
// end at once too, until the registry starts again.
func (r *registry) haltPasses() {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	if r.stopPasses != nil {
		r.stopPasses()
	}
}

// Nodes lists the node registry (GET /v1/nodes) as the node's watch of
// it has it, judging each entry's health by its last heartbeat's age:
// older than lost_after is lost.
func (n *Node) Nodes(ctx context.Context) ([]api.ClusterNode, error) {
	r := n.reg
	if r == nil {
		return nil, errors.New("cluster: the node registry is not open yet")
	}
	out := slices.Collect(maps.Values(r.view()))
	slices.SortFunc(out, func(a, b api.ClusterNode) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Drain hands this node's services over to the other nodes of its cluster
// (POST /v1/node/drain): from its next heartbeat, stored now, it says it
// is draining; the other nodes' failover passes take each of its services
// over, in turn as for a node gone, and this node gives each up when its
// placement names the taker. It takes nothing over itself, and stays
// draining until it stops. Draining again is harmless. A node alone has
// nowhere to send its services: a conflict.
func (n *Node) Drain(ctx context.Context) (api.ClusterNode, error) {
	r := n.reg
	if r == nil || n.place == nil {
		return api.ClusterNode{}, fmt.Errorf("%w: this node is not in a cluster: there is no other node to take its services", server.ErrConflict)
	}
	if r.draining.CompareAndSwap(0, time.Now().UnixNano()) {
		n.log.Warn("cluster: draining: the other nodes take this node's services over", "services", r.entry(api.NodeUp).Services)
	}
	if err := r.beat(ctx, api.NodeUp); err != nil {
		return api.ClusterNode{}, fmt.Errorf("%w: drain: the heartbeat saying so was not stored (the next one will say it): %v", server.ErrUnavailable, err)
	}
	return r.judge(r.entry(api.NodeUp), time.Now(), time.Now()), nil
}

// view is the registry as judged now, by node name.
func (r *registry) view() map[string]api.ClusterNode { return r.judgeAll(false) }

// claimView is view as a node taking services over must judge: a node not
// heard since this one began to hear beats is silent for no longer than
// that, whatever its stored heartbeat says. A stored heartbeat waits while
// the registry's stream elects a leader, so a node just started, reading
// the stored ones alone, would take the services of nodes alive.
func (r *registry) claimView() map[string]api.ClusterNode { return r.judgeAll(true) }

func (r *registry) judgeAll(claiming bool) map[string]api.ClusterNode {
	r.seenMu.Lock()
	defer r.seenMu.Unlock()
	// Judged by the last liveness beat heard, else (none heard since this
	// node started) by the last heartbeat stored.
	out := make(map[string]api.ClusterNode, len(r.seen))
	for name, s := range r.seen {
		last := s.stored
		h, ok := r.heard[name]
		if !ok && claiming && name != r.n.cfg.Name {
			h, ok = r.hearing, true
		}
		if ok && h.After(last) {
			last = h
		}
		out[name] = r.judge(s.node, last, time.Now())
	}
	return out
}

// node is one node of the registry as judged now.
func (r *registry) node(name string) (api.ClusterNode, bool) {
	c, ok := r.view()[name]
	return c, ok
}

// fresh reports whether this node stored a heartbeat within lost_after
// less one heartbeat: a node that could not for that long is about to be
// declared lost by the others, and must not take anything over.
func (r *registry) fresh() bool {
	return time.Since(time.Unix(0, r.stored.Load())) < r.lost-r.hb
}

// judge fills in what the reader judges at now of entry c last heard of
// at beat.
func (r *registry) judge(c api.ClusterNode, beat, now time.Time) api.ClusterNode {
	age := now.Sub(beat)
	c.Beat, c.BeatAgeMs, c.LostAfterMs = beat.UTC(), ms(age), ms(r.lost)
	if c.Health != api.NodeLeft && age >= r.lost {
		c.Health = api.NodeLost
	}
	c.Self = c.Name == r.n.cfg.Name
	return c
}

// untilAnswered calls f again while it meets "no responders" and ctx
// lasts: a stream just made in a cluster takes reads and writes only once
// its group has a leader, a moment later.
func untilAnswered(ctx context.Context, f func() error) error {
	for {
		err := f()
		if !errors.Is(err, nats.ErrNoResponders) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ClusterStatus is GET /v1/cluster: the node registry and every stream
// of the node's JetStream with its replicas as JetStream reports them.
func (n *Node) ClusterStatus(ctx context.Context) (api.ClusterStatus, error) {
	nodes, err := n.Nodes(ctx)
	if err != nil {
		return api.ClusterStatus{}, err
	}
	st := api.ClusterStatus{Cluster: n.cfg.Cluster.Name, Nodes: nodes, Streams: []api.StreamState{}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l := n.bus.JS.ListStreams(ctx)
	for info := range l.Info() {
		s := api.StreamState{
			Name: info.Config.Name, Replicas: info.Config.Replicas, Leader: n.cfg.Name,
			Messages: info.State.Msgs, Bytes: info.State.Bytes, Peers: []api.StreamMember{},
		}
		if ci := info.Cluster; ci != nil {
			s.Leader = ci.Leader
			for _, p := range ci.Replicas {
				s.Peers = append(s.Peers, api.StreamMember{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag, ActiveMs: ms(p.Active)})
			}
		}
		st.Streams = append(st.Streams, s)
	}
	if err := l.Err(); err != nil {
		return api.ClusterStatus{}, fmt.Errorf("%w: cluster status: list streams: %v", server.ErrUnavailable, err)
	}
	slices.SortFunc(st.Streams, func(a, b api.StreamState) int { return strings.Compare(a.Name, b.Name) })
	return st, nil
}
