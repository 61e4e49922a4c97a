package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/pgbridge"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Events on the bus (docs/design.md section 6): Publish stores an event
// in the events stream; every event trigger of a deployed service has a
// durable JetStream consumer on its topic and a loop here that fetches
// events and runs the service through the normal run path (invoke), one
// run per event, acknowledging the event only once its run is recorded.

// EventsConfig bounds the events stream and their delivery to event
// triggers.
type EventsConfig struct {
	// MaxAge is how long an event is kept in the stream, a Go duration
	// from 1m to 8760h. Default 168h (7 days).
	MaxAge string `json:"max_age" yaml:"max_age"`
	// MaxBytes caps the stream; the oldest events are dropped first.
	// Default 256Mi.
	MaxBytes string `json:"max_bytes" yaml:"max_bytes"`
	// MaxMessage caps one event's JSON payload, from 1Ki to 1Mi. Default
	// 64Ki.
	MaxMessage string `json:"max_message" yaml:"max_message"`
	// MaxDeliver is how many times an event is delivered to an event
	// trigger whose runs fail (error, timeout, crashed, oom, skipped for
	// want of memory, or not recorded) before it is recorded as a dead
	// letter, from 1 to 100.
	// Waiting for a free concurrency slot or for an unhealthy service's
	// backoff does not count. Default 5.
	MaxDeliver int `json:"max_deliver" yaml:"max_deliver"`
	// Postgres bridges PostgreSQL notifications to topics: each entry,
	// {dsn, channel, topic}, makes every NOTIFY on channel at the server
	// dsn names an event on topic, published by the operator as
	// {"channel", "payload", "pid"} (see PostgresChannel). Default none.
	Postgres []PostgresChannel `json:"postgres" yaml:"postgres"`
}

// DefaultEventsConfig returns the documented defaults.
func DefaultEventsConfig() EventsConfig {
	return EventsConfig{MaxAge: "168h", MaxBytes: "256Mi", MaxMessage: "64Ki", MaxDeliver: 5}
}

// Validate reports every problem, each with its key under "events.".
func (c EventsConfig) Validate() error {
	_, err := c.parse()
	return err
}

// eventLimits is EventsConfig in typed form.
type eventLimits struct {
	stream     bus.EventsConfig
	maxDeliver int
}

func (c EventsConfig) parse() (eventLimits, error) {
	var (
		l    eventLimits
		errs []error
	)
	if d, err := time.ParseDuration(c.MaxAge); err != nil || d < time.Minute || d > 8760*time.Hour {
		errs = append(errs, errors.New("events.max_age: must be a duration from 1m to 8760h"))
	} else {
		l.stream.MaxAge = d
	}
	if b, err := parseBytes(c.MaxBytes); err != nil {
		errs = append(errs, fmt.Errorf("events.max_bytes: %w", err))
	} else if b < 1<<20 {
		errs = append(errs, errors.New("events.max_bytes: must be at least 1Mi"))
	} else {
		l.stream.MaxBytes = b
	}
	if b, err := parseBytes(c.MaxMessage); err != nil {
		errs = append(errs, fmt.Errorf("events.max_message: %w", err))
	} else if b < 1<<10 || b > 1<<20 {
		errs = append(errs, errors.New("events.max_message: must be from 1Ki to 1Mi"))
	} else {
		l.stream.MaxMessage = int32(b)
	}
	if l.maxDeliver = c.MaxDeliver; l.maxDeliver < 1 || l.maxDeliver > 100 {
		errs = append(errs, errors.New("events.max_deliver: must be from 1 to 100"))
	}
	errs = append(errs, checkPostgres(c.Postgres)...)
	return l, errors.Join(errs...)
}

// headerPublisher carries who published an event.
const headerPublisher = "Andromeda-Publisher"

// errEventBusy is invoke's answer to an event over its service's
// concurrency bound: nothing is recorded; the event waits for a slot.
var errEventBusy = errors.New("concurrency limit reached")

// eventBus is the node's side of the events stream: its limits, the
// consumer loops of each service, and the last error of each event whose
// runs failed (for its dead letter).
type eventBus struct {
	stream jetstream.Stream
	limits eventLimits
	// postgres bridges events.postgres (pgbridge.go); nil without.
	postgres *pgbridge.Bridge

	mu      sync.Mutex
	loops   map[string][]*eventLoop // by service
	lastErr map[string]string       // by consumer and stream sequence
	// testRecorded, when set, sees each event whose run was recorded
	// before it is acknowledged, and settles it itself by returning true;
	// tests only.
	testRecorded func(msg jetstream.Msg) bool
}

func (e *eventBus) settledByTest(msg jetstream.Msg) bool {
	e.mu.Lock()
	f := e.testRecorded
	e.mu.Unlock()
	return f != nil && f(msg)
}

// eventLoop is one consumer's fetch loop; stop cancels it and waits for
// its runs in flight.
type eventLoop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (l *eventLoop) stop() {
	l.cancel()
	<-l.done
}

// openEvents creates or updates the events stream.
func (n *Node) openEvents(ctx context.Context) error {
	lim, err := n.cfg.Events.parse()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	s, err := n.bus.EventStream(ctx, lim.stream)
	if err != nil {
		return err
	}
	n.events = &eventBus{stream: s, limits: lim, loops: map[string][]*eventLoop{}, lastErr: map[string]string{}}
	return nil
}

// stopEvents stops every consumer loop; the durable consumers stay, so
// the events that arrive meanwhile are delivered after the next start.
func (n *Node) stopEvents() error {
	if n.events == nil {
		return nil
	}
	n.events.mu.Lock()
	all := n.events.loops
	n.events.loops = map[string][]*eventLoop{}
	n.events.mu.Unlock()
	var wg sync.WaitGroup
	for _, loops := range all {
		for _, l := range loops {
			wg.Go(l.stop)
		}
	}
	wg.Wait()
	return nil
}

// Publish implements server.Backend: check the topic, the payload and
// whether p may publish there, then store the event. The operator may
// publish on any topic; anyone else only under its own name, OWNER.…
func (n *Node) Publish(ctx context.Context, p server.Principal, topic string, message json.RawMessage) (api.Published, error) {
	seq, err := n.publish(ctx, p.Operator(), p.Name, p.Name, topic, message)
	if err != nil {
		return api.Published{}, err
	}
	return api.Published{Topic: topic, Sequence: seq}, nil
}

// publish stores message on topic for owner (anywhere when operator),
// naming publisher on the event, and returns its stream sequence once
// JetStream acknowledged it.
func (n *Node) publish(ctx context.Context, operator bool, owner, publisher, topic string, message json.RawMessage) (uint64, error) {
	return n.publishID(ctx, operator, owner, publisher, topic, message, "")
}

// publishID is publish with a message id: JetStream stores one event per
// id within the stream's duplicate window (2 minutes), so a publish
// retried after a lost acknowledgement is stored once.
func (n *Node) publishID(ctx context.Context, operator bool, owner, publisher, topic string, message json.RawMessage, msgID string) (uint64, error) {
	if err := bus.CheckTopic(topic); err != nil {
		return 0, server.Errorf(server.ErrInvalid, "%v", err)
	}
	if max := int(n.events.limits.stream.MaxMessage); len(message) > max {
		return 0, server.Errorf(server.ErrInvalid, "message: at most %d bytes (events.max_message), got %d", max, len(message))
	}
	if len(message) == 0 || !json.Valid(message) {
		return 0, server.Errorf(server.ErrInvalid, "message: must be a JSON value")
	}
	if !operator && !strings.HasPrefix(topic, owner+".") && !n.publicTopic(topic) {
		return 0, server.Errorf(server.ErrForbidden, "topic %s: %s may publish only on topics under %s. and on public topics (event triggers marked public)", topic, owner, owner)
	}
	if err := n.gate.check(); err != nil {
		return 0, &server.Error{Kind: server.ErrUnavailable, Msg: err.Error(), RetryAfter: retryUnavailable}
	}
	msg := &nats.Msg{Subject: bus.EventSubject(topic), Data: message, Header: nats.Header{}}
	n.signPublisher(msg, publisher)
	if msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, msgID)
	}
	ack, err := n.bus.JS.PublishMsg(ctx, msg, jetstream.WithExpectStream(bus.StreamEvents))
	if err != nil {
		return 0, &server.Error{Kind: server.ErrUnavailable, Msg: fmt.Sprintf("publish on %s: %v", topic, err), RetryAfter: retryUnavailable}
	}
	return ack.Sequence, nil
}

// publishEmits publishes a run's emits to bus topics with its owner's
// rights (the operator's services anywhere, others under OWNER.…) and
// says what became of each. Emits to flow ports are not the bus's.
func (n *Node) publishEmits(ctx context.Context, d *deployed, emits []contract.Emit) []store.Emitted {
	var out []store.Emitted
	for _, e := range emits {
		if e.Topic == "" {
			continue
		}
		owner := d.rec.Owner
		if owner == "" {
			owner = "operator"
		}
		r := store.Emitted{Topic: e.Topic}
		seq, err := n.publish(ctx, owner == "operator", owner, "service:"+d.rec.Name, e.Topic, e.Message)
		if err != nil {
			if len(r.Topic) > contract.MaxTopicLen {
				r.Topic = strings.ToValidUTF8(r.Topic[:contract.MaxTopicLen], "") + "…" // refused for its length: the error says so
			}
			r.Error = err.Error()
		} else {
			r.Seq = seq
		}
		out = append(out, r)
	}
	return out
}

// apiEmitted is a run's emit results as the API shows them.
func apiEmitted(es []store.Emitted) []api.Emitted {
	if es == nil {
		return nil
	}
	out := make([]api.Emitted, len(es))
	for i, e := range es {
		out[i] = api.Emitted{Topic: e.Topic, Sequence: e.Seq, Error: e.Error}
	}
	return out
}

// consumerPrefix begins the names of service's durable consumers; service
// names have no "_", so no other service's names share it.
func consumerPrefix(service string) string { return bus.ConsumerEventsPrefix + service + "_" }

// consumerName names the durable consumer of trigger i of service on
// topic: a changed topic is a new consumer, which starts with new events.
func consumerName(service string, i int, topic string) string {
	h := sha256.Sum256([]byte(topic))
	return fmt.Sprintf("%s%d_%s", consumerPrefix(service), i, hex.EncodeToString(h[:4]))
}

// switchEvents makes d's event triggers consume: the loops of the version
// it replaces stop first (their runs in flight finish), the durable
// consumers of triggers d still has stay where they were, so no event is
// lost or run twice across an upgrade, and the others are deleted.
func (n *Node) switchEvents(d *deployed) {
	name := d.rec.Name
	n.stopEventLoops(name)
	keep := map[string]bool{}
	var loops []*eventLoop
	for i, t := range d.triggers {
		if t.Kind != trigger.KindEvent {
			continue
		}
		// A service admitted before the manifest took the bus's topic rule
		// may name a topic nothing can be published on.
		if err := bus.CheckTopic(t.Topic); err != nil {
			n.log.Error("event trigger not consuming: nothing can be published on its topic", logService, name, logTrigger, trigger.Name(i), logErr, err)
			continue
		}
		cname := consumerName(name, i, t.Topic)
		keep[cname] = true
		cons, err := n.eventConsumer(d, cname, t.Topic)
		if err != nil {
			n.log.Error("event trigger not consuming", logService, name, logTrigger, trigger.Name(i), "topic", t.Topic, logErr, err)
			continue
		}
		ctx, cancel := context.WithCancel(n.ctx)
		l := &eventLoop{cancel: cancel, done: make(chan struct{})}
		go n.eventLoop(ctx, l.done, d, i, t.Topic, cons)
		loops = append(loops, l)
	}
	n.events.mu.Lock()
	n.events.loops[name] = loops
	n.events.mu.Unlock()
	n.deleteConsumers(name, keep)
	n.refreshPublicTopics("")
}

// holdEvents makes the durable consumers of d's event triggers without
// consuming from them: the events published on their topics from now on
// wait in the stream until switchEvents starts the loops.
func (n *Node) holdEvents(d *deployed) {
	for i, t := range d.triggers {
		if t.Kind != trigger.KindEvent || bus.CheckTopic(t.Topic) != nil {
			continue
		}
		if _, err := n.eventConsumer(d, consumerName(d.rec.Name, i, t.Topic), t.Topic); err != nil {
			n.log.Error("event trigger cannot hold its events until the service starts", logService, d.rec.Name, logTrigger, trigger.Name(i), "topic", t.Topic, logErr, err)
		}
	}
}

// stopEventLoops stops service's consumer loops, waiting for each to end;
// their durable consumers stay.
func (n *Node) stopEventLoops(service string) {
	n.events.mu.Lock()
	old := n.events.loops[service]
	delete(n.events.loops, service)
	n.events.mu.Unlock()
	for _, l := range old {
		l.stop()
	}
}

// dropEvents stops service's loops and deletes its durable consumers: a
// removed service gets no more events.
func (n *Node) dropEvents(service string) {
	n.stopEventLoops(service)
	n.deleteConsumers(service, nil)
	n.refreshPublicTopics(service)
}

// deleteConsumers deletes service's durable consumers not in keep.
func (n *Node) deleteConsumers(service string, keep map[string]bool) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	names := n.events.stream.ConsumerNames(ctx)
	var stale []string
	for c := range names.Name() {
		if strings.HasPrefix(c, consumerPrefix(service)) && !keep[c] {
			stale = append(stale, c)
		}
	}
	if err := names.Err(); err != nil {
		n.log.Warn("list event consumers", logService, service, logErr, err)
	}
	for _, c := range stale {
		if err := n.events.stream.DeleteConsumer(ctx, c); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			n.log.Warn("delete event consumer", logService, service, "consumer", c, logErr, err)
		}
	}
}

// ackWait is how long an event may be held without news before JetStream
// delivers it again: twice the service's timeout, at least 30 s. A run
// that takes longer (state conflicts invoke it again) says it is in
// progress every third of it.
func ackWait(d *deployed) time.Duration { return max(30*time.Second, 2*d.timeout()) }

// eventConsumer creates the durable consumer cname, or updates it keeping
// its place. A new one starts with the events published from now on.
func (n *Node) eventConsumer(d *deployed, cname, topic string) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	return n.events.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       cname,
		Description:   "event trigger of " + d.rec.Name + " on " + topic,
		FilterSubject: bus.EventSubject(topic),
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait(d),
		// One more than the runs allowed: the last delivery records the
		// dead letter.
		MaxDeliver:    n.events.limits.maxDeliver + 1,
		MaxAckPending: max(64, 4*cap(d.sem)),
	})
}

// eventLoop fetches events for one trigger while ctx lives, as many at a
// time as the service has free concurrency slots, and handles each on its
// own goroutine. It closes done once its runs in flight are over.
func (n *Node) eventLoop(ctx context.Context, done chan struct{}, d *deployed, idx int, topic string, cons jetstream.Consumer) {
	var wg sync.WaitGroup
	defer close(done)
	defer wg.Wait()
	log := n.log.With(logService, d.rec.Name, logTrigger, trigger.Name(idx))
	ran := n.ranAboveAckFloor(ctx, log, d.rec.Name, trigger.Name(idx), topic, cons)
	c := cap(d.sem)
	slots := make(chan struct{}, c)
	for {
		// An unhealthy service fetches nothing until its backoff ends, so
		// its events wait in the stream without counting deliveries.
		if skip, until := d.health.Skip(time.Now()); skip {
			if !sleepCtx(ctx, time.Until(until)) {
				return
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		// select picks at random among ready cases: a free slot must not
		// win over a stop, or a stopped loop fetches again (a second each).
		if ctx.Err() != nil {
			return
		}
		k := 1
	fill:
		for k < c {
			select {
			case slots <- struct{}{}:
				k++
			default:
				break fill
			}
		}
		batch, err := cons.Fetch(k, jetstream.FetchMaxWait(time.Second))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				wg.Go(func() {
					defer func() { <-slots }()
					n.handleEvent(ctx, log, d, idx, topic, msg, ran)
				})
			}
			err = batch.Error()
		}
		for ; got < k; got++ {
			<-slots
		}
		if err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			log.Warn("fetch events", logErr, err)
			if !sleepCtx(ctx, time.Second) {
				return
			}
		}
	}
}

// handleEvent runs d for one event and settles it: acknowledged once the
// run is recorded and did not fail; delivered again later (with backoff)
// when the run failed or was not recorded; after MaxDeliver runs, recorded
// as a dead letter and terminated. An event that finds the service busy,
// or the store refusing work, waits here holding its delivery. ran holds
// the events of this trigger that ran before its loop started (see
// ranAboveAckFloor): they are acknowledged without running again.
func (n *Node) handleEvent(ctx context.Context, log *slog.Logger, d *deployed, idx int, topic string, msg jetstream.Msg, ran map[uint64]string) {
	md, err := msg.Metadata()
	if err != nil {
		log.Error("event without metadata", logErr, err)
		msg.Term()
		return
	}
	key := fmt.Sprintf("%s/%d", md.Consumer, md.Sequence.Stream)
	ev := trigger.Event{
		Service: d.rec.Name, Trigger: trigger.Name(idx), Kind: trigger.KindEvent,
		At: md.Timestamp.UTC(), Topic: topic, Seq: md.Sequence.Stream,
		Publisher: n.eventPublisher(msg.Subject(), msg.Headers(), msg.Data()), Message: json.RawMessage(msg.Data()),
	}
	if int(md.NumDelivered) > n.events.limits.maxDeliver {
		n.deadLetter(log, d, ev, key, int(md.NumDelivered)-1, msg)
		return
	}
	// A NATS client may publish what the API would refuse: it never runs.
	if err := n.checkRawEvent(msg.Data()); err != nil {
		n.events.remember(key, err.Error())
		n.deadLetter(log, d, ev, key, int(md.NumDelivered), msg)
		return
	}
	// An event delivered again after a crash may have run already: its run
	// recorded (or its write-ahead copy recorded at start) but the ack, or
	// even the delivery itself, lost with the consumer state the crash
	// did not let JetStream write.
	if id, ok := ran[ev.Seq]; ok {
		log.Info("event ran before the restart; acknowledged without running it again", logRun, id, "seq", ev.Seq)
		n.events.forget(key)
		n.ackEvent(log, msg, id, ev.Seq)
		return
	}
	if md.NumDelivered > 1 {
		if id, ok := n.eventRan(ctx, d.rec.Name, ev); ok {
			log.Info("redelivered event already ran; acknowledged without running it again", logRun, id, "seq", ev.Seq)
			n.events.forget(key)
			n.ackEvent(log, msg, id, ev.Seq)
			return
		}
	}
	stop := heartbeat(msg, ackWait(d)/3)
	defer stop()
	var run store.Run
	for {
		if ctx.Err() != nil {
			msg.Nak() // stopping: the next loop (or the node's next start) takes it
			return
		}
		if n.gate.check() != nil {
			sleepCtx(ctx, retryUnavailable)
			continue
		}
		run, err = n.invoke(n.ctx, d, ev)
		if !errors.Is(err, errEventBusy) {
			break
		}
		// A slot is taken by a manual or cron run: wait briefly for it.
		sleepCtx(ctx, 10*time.Millisecond+rand.N(40*time.Millisecond))
	}
	switch {
	case err != nil:
		n.events.remember(key, err.Error())
		msg.NakWithDelay(retryUnavailable)
	case failed(run.Outcome):
		n.events.remember(key, run.Outcome+": "+run.Error)
		msg.NakWithDelay(redeliveryDelay(int(md.NumDelivered)))
	default:
		n.events.forget(key)
		if n.events.settledByTest(msg) {
			return
		}
		n.ackEvent(log, msg, run.ID, ev.Seq)
	}
}

// ackEvent acknowledges msg, waiting for JetStream to confirm.
func (n *Node) ackEvent(log *slog.Logger, msg jetstream.Msg, runID string, seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn("event run recorded but its acknowledgement was not: it will be delivered again", logRun, runID, "seq", seq, logErr, err)
	}
}

// eventRan looks for a recorded run of service for ev that did not fail,
// among the runs that started since the event was published (at most
// eventRanScan of them), and returns its id.
func (n *Node) eventRan(ctx context.Context, service string, ev trigger.Event) (string, bool) {
	q := store.RunQuery{Since: ev.At.Add(-time.Minute), Limit: store.MaxListRuns}
	for scanned := 0; scanned < eventRanScan; {
		page, err := n.store.ListServiceRuns(ctx, q, service)
		if err != nil {
			return "", false // run it: at least once
		}
		for _, r := range page.Runs {
			if r.Trigger.Kind == trigger.KindEvent && r.Trigger.Name == ev.Trigger && r.Trigger.Seq == ev.Seq && !failed(r.Outcome) {
				return r.ID, true
			}
		}
		scanned += len(page.Runs)
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	return "", false
}

// eventRanScan bounds how many runs a redelivered event's check reads.
const eventRanScan = 10_000

// ranAboveAckFloor returns, by event sequence, the runs of service's
// trigger on topic that did not fail, recorded for events above cons's
// ack floor: the events a previous loop or node may have run without
// JetStream remembering it. The embedded server writes a consumer's state
// (deliveries, acks) to disk about ten times a second, not with each
// change, so after a SIGKILL an event that was delivered, run and
// acknowledged just before can come back as a first delivery, which
// NumDelivered cannot tell from a new event. It reads the runs since the
// first event above the floor was published, at most eventRanScan of
// them; on an error it returns what it has (those events run: at least
// once).
func (n *Node) ranAboveAckFloor(ctx context.Context, log *slog.Logger, service, trig, topic string, cons jetstream.Consumer) map[uint64]string {
	ran := map[uint64]string{}
	info, err := cons.Info(ctx)
	if err != nil {
		log.Warn("read the event consumer's state; events it lost may run again", logErr, err)
		return ran
	}
	floor := info.AckFloor.Stream
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return ran // nothing above the floor will be delivered
	}
	q := store.RunQuery{Limit: store.MaxListRuns}
	if m, err := n.events.stream.GetMsg(ctx, floor+1); err == nil {
		q.Since = m.Time.Add(-time.Minute)
	}
	for scanned := 0; scanned < eventRanScan; {
		page, err := n.store.ListServiceRuns(ctx, q, service)
		if err != nil {
			log.Warn("read the runs of events above the consumer's ack floor; events it lost may run again", logErr, err)
			return ran
		}
		for _, r := range page.Runs {
			if r.Trigger.Kind == trigger.KindEvent && r.Trigger.Name == trig && r.Trigger.Topic == topic && r.Trigger.Seq > floor && !failed(r.Outcome) {
				ran[r.Trigger.Seq] = r.ID
			}
		}
		scanned += len(page.Runs)
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	return ran
}

// deadLetter records an event whose runs failed delivered times as a run
// that says so, with the last error, and terminates it.
func (n *Node) deadLetter(log *slog.Logger, d *deployed, ev trigger.Event, key string, delivered int, msg jetstream.Msg) {
	last := n.events.last(key)
	if last == "" {
		last = "unknown (the node restarted since)"
	}
	run := store.Run{
		ID: newRunID(), Service: d.rec.Name, Version: d.rec.Version, Owner: d.rec.Owner,
		Trigger: contract.Trigger{Kind: ev.Kind, Name: ev.Trigger, Topic: ev.Topic, Seq: ev.Seq, Publisher: ev.Publisher, At: ev.At.Format(time.RFC3339Nano)},
		Start:   time.Now().UTC(),
		Outcome: string(sandbox.Error),
		Error:   fmt.Sprintf("dead letter: event %d on %s delivered %d times (events.max_deliver) without a run that succeeded; last error: %s", ev.Seq, ev.Topic, delivered, last),
	}
	if err := n.record(run); err != nil {
		msg.NakWithDelay(retryUnavailable)
		return
	}
	n.events.forget(key)
	log.Warn("event dead-lettered", logRun, run.ID, "topic", ev.Topic, "seq", ev.Seq, "deliveries", delivered)
	msg.TermWithReason("dead letter: run " + run.ID)
}

// failed reports whether a recorded run's outcome makes its event worth
// delivering again: the service failed, or did not run (skipped when its
// instance found no room in the wasm memory budget), so nothing it asked
// for happened. A rejected run is final: the same output would be rejected
// again.
func failed(outcome string) bool {
	switch sandbox.Outcome(outcome) {
	case sandbox.Error, sandbox.Timeout, sandbox.Crashed, sandbox.OOM, sandbox.Skipped:
		return true
	}
	return false
}

// redeliveryDelay is the wait before an event whose run failed is
// delivered again: 1 s, doubling, at most 1 min.
func redeliveryDelay(delivered int) time.Duration {
	return min(time.Minute, time.Second<<min(delivered-1, 6))
}

// heartbeat tells JetStream every interval that msg is still being worked
// on, until the returned stop is called.
func heartbeat(msg jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// sleepCtx waits d or until ctx ends; false means ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *eventBus) remember(key, err string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lastErr[key] = truncate(err, 1024)
}

func (e *eventBus) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.lastErr, key)
}

func (e *eventBus) last(key string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr[key]
}
