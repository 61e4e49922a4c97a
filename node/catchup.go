package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Catch-up (docs/decisions.md, "Missed ticks and catch-up"): the node
// remembers, per cron trigger, the scheduled time of the last tick it
// evaluated, in the andromeda_ticks bucket. When a service is activated
// for the first time since the node started, the ticks due between that
// time and now are the ones missed while the node was down, and the
// trigger's catch_up says what becomes of them. Ticks skipped while the
// service was unhealthy are recorded one by one as skipped runs; when it is
// healthy again, catch_up once or all runs them as for a restart.

// missedPrefix begins the noop reason of a missed-ticks record, which
// andromeda why reads back.
const missedPrefix = "missed "

// tickRecord is the value of one key of the ticks bucket.
type tickRecord struct {
	// At is the scheduled time of the last tick evaluated.
	At time.Time `json:"at"`
	// Spec is the trigger's schedule ("every 1s", "*/5 * * * * *") when
	// it was evaluated: a changed schedule has no missed ticks.
	Spec string `json:"spec"`
}

// tickBook is the node's memory of evaluated ticks. Safe for concurrent use.
type tickBook struct {
	kv jetstream.KeyValue
	// quit is closed when the node stops: catch-up runs end; work counts
	// the goroutines running them.
	quit chan struct{}
	work sync.WaitGroup

	mu sync.Mutex
	// atStart is what the bucket held when the node started, by key,
	// consumed by the first activation of each service.
	atStart map[string]tickRecord
	// written is the newest tick noted per key: a key is written at most
	// once per tick, and never moves back.
	written map[string]time.Time
	// writing is, per key, the channel of its newest write, closed when
	// that write is done: a key's writes run one after the other, so a
	// slow older write cannot land after a newer one.
	writing map[string]chan struct{}
	// puts counts the writes in flight, waited for when the node stops.
	puts sync.WaitGroup
	// caught holds the services whose start catch-up ran.
	caught map[string]bool
	// unhealthy holds, per key, the ticks skipped while the service was
	// unhealthy (the newest MaxCatchUpLimit), for catch_up once or all.
	unhealthy map[string][]time.Time
}

// tickKey is the bucket key of trigger i of service.
func tickKey(service string, i int) string { return service + "." + strconv.Itoa(i) }

// triggerIndex reads i back from "triggers[i]"; -1 when it is not that.
func triggerIndex(name string) int {
	s, ok := strings.CutPrefix(name, "triggers[")
	if !ok || !strings.HasSuffix(s, "]") {
		return -1
	}
	i, err := strconv.Atoi(strings.TrimSuffix(s, "]"))
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// openTicks creates or opens the ticks bucket and reads what it holds.
func (n *Node) openTicks(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kv, err := n.bus.JS.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketTicks, Description: "last tick evaluated per cron trigger: service.index → time and schedule",
		History: 1, Storage: jetstream.FileStorage, Replicas: n.bus.Replicas(),
	})
	if err != nil {
		return fmt.Errorf("ticks: bucket %s: %w", bus.BucketTicks, err)
	}
	b := &tickBook{kv: kv, quit: make(chan struct{}), atStart: map[string]tickRecord{}, written: map[string]time.Time{},
		writing: map[string]chan struct{}{}, caught: map[string]bool{}, unhealthy: map[string][]time.Time{}}
	keys, err := kv.ListKeys(cctx)
	if err != nil {
		return fmt.Errorf("ticks: list %s: %w", bus.BucketTicks, err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(cctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		var r tickRecord
		if json.Unmarshal(e.Value(), &r) != nil {
			n.log.Warn("ticks: unreadable record ignored", "key", k)
			continue
		}
		b.atStart[k], b.written[k] = r, r.At
	}
	n.ticks = b
	// Unwound before the scheduler's stop, so after it: no catch-up run
	// starts once the node stops, and those in flight end first.
	n.undo = append(n.undo, func() error {
		b.mu.Lock()
		close(b.quit)
		b.mu.Unlock()
		b.work.Wait()
		b.puts.Wait()
		return nil
	})
	return nil
}

// noteTick remembers that tick at of trigger key was evaluated. It writes
// the bucket once per tick and never moves a key back; a store that cannot
// write is not waited for (the tick then counts as missed after a crash).
// It returns at once: the write runs while the tick's run starts, and the
// returned channel is closed when it is done (written, failed or not
// needed). A run of the tick waits for it before anything of the run takes
// effect (waitTickNoted), so a run whose tick a crash left unwritten has
// changed nothing and catch-up may run the tick again; the tick's run no
// longer waits for the store's write before it starts (about a
// millisecond of lag per tick).
func (n *Node) noteTick(key string, at time.Time, spec string) <-chan struct{} {
	b := n.ticks
	done := make(chan struct{})
	b.mu.Lock()
	if !at.After(b.written[key]) || n.bus.Health() != nil {
		b.mu.Unlock()
		close(done)
		return done
	}
	b.written[key] = at
	prev := b.writing[key]
	b.writing[key] = done
	b.puts.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.puts.Done()
		defer func() {
			b.mu.Lock()
			if b.writing[key] == done {
				delete(b.writing, key)
			}
			b.mu.Unlock()
			close(done)
		}()
		if prev != nil {
			<-prev
		}
		b.mu.Lock()
		newer := b.written[key].After(at)
		b.mu.Unlock()
		if newer {
			return // a newer tick of the key writes after this one
		}
		val, _ := json.Marshal(tickRecord{At: at.UTC(), Spec: spec})
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		defer cancel()
		if _, err := b.kv.Put(ctx, key, val); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Warn("ticks: last tick not written", "key", key, logErr, err)
		}
	}()
	return done
}

// tickNotedKey holds, in an invocation's context, the channel of its
// tick's write (noteTick).
type tickNotedKey struct{}

// waitTickNoted waits until the write of the invocation's tick, if it has
// one, is done, or ctx ends.
func waitTickNoted(ctx context.Context) {
	if ch, ok := ctx.Value(tickNotedKey{}).(<-chan struct{}); ok {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}

// forgetTicks drops what the node remembers of service's ticks: a service
// removed and submitted again missed nothing.
func (n *Node) forgetTicks(service string) {
	b := n.ticks
	if b == nil {
		return
	}
	b.mu.Lock()
	var keys []string
	for k := range b.written {
		if strings.HasPrefix(k, service+".") {
			keys = append(keys, k)
			delete(b.written, k)
			delete(b.unhealthy, k)
		}
	}
	delete(b.caught, service)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	for _, k := range keys {
		if err := b.kv.Purge(ctx, k); err != nil {
			n.log.Warn("ticks: forget", "key", k, logErr, err)
		}
	}
}

// catchUpPolicy is the catch_up of trigger i of d, in the trigger
// package's terms.
func catchUpPolicy(d *deployed, i int) trigger.CatchUp {
	if d == nil || d.manifest == nil || i < 0 || i >= len(d.manifest.Triggers) {
		return trigger.CatchUp{Policy: trigger.CatchUpSkip}
	}
	t := d.manifest.Triggers[i]
	p := trigger.CatchUp{Policy: t.CatchUp}
	if p.Policy == "" {
		p.Policy = trigger.CatchUpSkip
	}
	if p.Policy == manifest.CatchUpAll {
		p.Limit = t.CatchUpLimitOrDefault()
	}
	return p
}

// tick is the scheduler's callback: it remembers the tick, runs it
// (onTick), and, for a trigger whose catch_up runs missed ticks, keeps the
// ticks skipped while the service was unhealthy and runs them once it is
// healthy again.
func (n *Node) tick(ev trigger.Event) {
	if id, ok := strings.CutPrefix(ev.Service, flowSchedPrefix); ok {
		n.flowTick(id, ev)
		return
	}
	d := n.lookup(ev.Service)
	i := triggerIndex(ev.Trigger)
	if d == nil || i < 0 || i >= len(d.triggers) {
		n.onTick(ev)
		return
	}
	key := tickKey(ev.Service, i)
	noted := n.noteTick(key, ev.At, d.triggers[i].String())
	policy := catchUpPolicy(d, i)
	if policy.Policy == trigger.CatchUpSkip {
		n.onTickNoted(ev, noted)
		return
	}
	// The tick was skipped as unhealthy if the service was in backoff
	// both before and after it: invoke decided between the two, and
	// counting a tick that ran as skipped would run it twice.
	before, _ := d.health.Skip(time.Now())
	n.onTickNoted(ev, noted)
	after, _ := d.health.Skip(time.Now())
	b := n.ticks
	switch {
	case before && after:
		b.mu.Lock()
		ts := append(b.unhealthy[key], ev.At)
		if len(ts) > trigger.MaxCatchUpLimit {
			ts = ts[len(ts)-trigger.MaxCatchUpLimit:]
		}
		b.unhealthy[key] = ts
		b.mu.Unlock()
	case !before && d.health.State().Healthy:
		b.mu.Lock()
		ts := b.unhealthy[key]
		delete(b.unhealthy, key)
		b.mu.Unlock()
		if len(ts) == 0 {
			return
		}
		keep := 1
		if policy.Policy == trigger.CatchUpAll {
			keep = policy.Limit
		}
		if len(ts) > keep {
			ts = ts[len(ts)-keep:]
		}
		n.log.Info("catch-up: running ticks skipped while unhealthy", logService, ev.Service, logTrigger, ev.Trigger, "ticks", len(ts), "catch_up", policy.Policy)
		// Not on the scheduler's callback: its Stop waits for those,
		// and the node's stop ends catch-up runs after it (openTicks).
		if n.catchUpWork() {
			go func() {
				defer b.work.Done()
				n.runTicks(d, i, ts)
			}()
		}
	}
}

// catchUpWork counts a catch-up goroutine, unless the node is stopping;
// the caller calls n.ticks.work.Done when it ends.
func (n *Node) catchUpWork() bool {
	b := n.ticks
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.quit:
		return false
	default:
	}
	b.work.Add(1)
	return true
}

// runTicks runs the ticks ts of trigger i of d one after the other, oldest
// first, as the scheduler would have; it stops when the node closes.
func (n *Node) runTicks(d *deployed, i int, ts []time.Time) {
	for _, at := range ts {
		select {
		case <-n.ticks.quit:
			return
		default:
		}
		n.onTick(trigger.Event{Service: d.rec.Name, Trigger: trigger.Name(i), Kind: trigger.KindCron, At: at.UTC(), Message: d.triggers[i].Message})
	}
}

// catchUp handles, once per service per node start, the ticks of d's cron
// triggers that fell due after the last one evaluated before the node
// stopped and at or before now: it records the missed ones as one skipped
// run saying so, and runs the others (catch_up once or all) in the
// background. now must be taken before d's triggers are scheduled, so that
// no tick is both caught up and fired.
func (n *Node) catchUp(d *deployed, now time.Time) {
	b := n.ticks
	if b == nil {
		return
	}
	name := d.rec.Name
	b.mu.Lock()
	if b.caught[name] {
		b.mu.Unlock()
		return
	}
	b.caught[name] = true
	type job struct {
		i   int
		rec tickRecord
	}
	var jobs []job
	for i, sp := range d.triggers {
		if sp.Kind != trigger.KindCron {
			continue
		}
		key := tickKey(name, i)
		rec, ok := b.atStart[key]
		delete(b.atStart, key)
		if !ok {
			continue
		}
		if rec.Spec != sp.String() {
			n.log.Info("catch-up: schedule changed while the node was down; nothing to catch up", logService, name, logTrigger, trigger.Name(i), "was", rec.Spec, "now", sp.String())
			continue
		}
		jobs = append(jobs, job{i, rec})
	}
	b.mu.Unlock()
	// Planning walks up to 2^20 ticks of a cron expression (about 0.15 s):
	// off the activation's path, which now already fixed.
	for _, j := range jobs {
		if !n.catchUpWork() {
			return
		}
		go func() {
			defer n.ticks.work.Done()
			sp := d.triggers[j.i]
			from := j.rec.At
			if n.place != nil {
				// In a cluster the node that ran the service before may
				// have fired ticks after the one noted here: those were
				// not missed.
				if last, ok := n.place.lastClaimed(name, j.i, from, now); ok {
					from = last.Add(time.Millisecond) // claims keep milliseconds; the tick itself is within this one
				}
				if !from.Before(now) {
					return
				}
			}
			plan, err := trigger.PlanCatchUp(sp, catchUpPolicy(d, j.i), time.UTC, from, now)
			if err != nil {
				n.log.Error("catch-up", logService, name, logTrigger, trigger.Name(j.i), logErr, err)
				return
			}
			if plan.Due == 0 {
				return
			}
			<-n.noteTick(tickKey(name, j.i), plan.Last, sp.String())
			n.recordMissed(d, j.i, plan, now)
			n.runTicks(d, j.i, plan.Run)
		}()
	}
}

// recordMissed records the ticks of plan that do not run as one skipped
// run of trigger i, at the newest of them (a tick that runs has its own
// record), saying how many fell due, when, and what catch_up did about
// them. A plan that runs every due tick records nothing. In a cluster the
// record's tick is claimed like a tick that fires: the node the service
// moved from may still have fired it after the catch-up was planned
// (claims are read before the plan, and a hand-over lets both nodes run
// the service for a moment), and a tick has one record.
func (n *Node) recordMissed(d *deployed, i int, plan trigger.CatchUpPlan, now time.Time) {
	if plan.Missed == 0 {
		return
	}
	if !n.claimTick(trigger.Event{Service: d.rec.Name, Trigger: trigger.Name(i), Kind: trigger.KindCron, At: plan.MissedLast.UTC()}) {
		n.log.Info("catch-up: missed ticks not recorded: their newest tick is not claimed here (another node fired it, or the claim failed)", logService, d.rec.Name, logTrigger, trigger.Name(i), "tick", plan.MissedLast.UTC())
		return
	}
	policy := catchUpPolicy(d, i)
	count := strconv.Itoa(plan.Due)
	if plan.Capped {
		count = "at least " + count
	}
	reason := fmt.Sprintf("%s%d of %s ticks due from %s to %s while the node was down (catch_up: %s", missedPrefix,
		plan.Missed, count, plan.First.UTC().Format(time.RFC3339), plan.Last.UTC().Format(time.RFC3339), policy.Policy)
	switch policy.Policy {
	case trigger.CatchUpSkip:
		reason += ")"
	case trigger.CatchUpOnce:
		reason += "; the newest runs)"
	default:
		reason += fmt.Sprintf(", limit %d; the newest %d run)", policy.Limit, len(plan.Run))
	}
	run := store.Run{
		ID: newRunID(), Service: d.rec.Name, Version: d.rec.Version, Owner: d.rec.Owner,
		Trigger: contract.Trigger{Kind: trigger.KindCron, Name: trigger.Name(i), At: plan.MissedLast.UTC().Format(time.RFC3339Nano)},
		Start:   now.UTC(),
		Outcome: string(sandbox.Skipped),
		Noop:    reason,
	}
	if err := n.record(run); err != nil {
		n.log.Error("catch-up: missed ticks not recorded", logService, d.rec.Name, logTrigger, trigger.Name(i), logErr, err)
		return
	}
	n.metrics.observe(d.rec.Name, run.Outcome, 0)
	n.log.Info("catch-up: missed ticks recorded", logService, d.rec.Name, logTrigger, trigger.Name(i), logRun, run.ID, "reason", reason)
}
