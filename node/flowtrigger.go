package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/flow"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// A flow's triggers (cron and event) start flow runs while it runs. They
// are a service's triggers in everything but where their message goes: a
// cron trigger is scheduled by the node's one scheduler, under a name no
// service can have ("flow:<id>"); an event trigger has a durable
// JetStream consumer on its topic. Each message is stored in the flow's
// queue, exactly as a fire stores it, with a flow run id derived from the
// tick's time or the event's stream sequence, so that a tick or an event
// delivered twice is stored once; an event is acknowledged only once
// stored. A full queue holds the source back: the event is delivered
// again a second later, the tick is skipped and logged with the reason.
// A stopped flow schedules nothing; its events wait in the stream.

// flowSchedPrefix begins the scheduler's names of flows' cron triggers.
const flowSchedPrefix = "flow:"

// flowTriggers are the triggers of a running flow.
type flowTriggers struct {
	specs   []trigger.Spec
	all     []manifest.Trigger // normalized, as a service's: http triggers' paths, methods and auth
	modules []string           // where each trigger's message goes; "" the entries
	loops   []*eventLoop
}

// flowTriggerSpecs converts fl's triggers as a service's are converted.
func flowTriggerSpecs(fl *flow.Flow) flowTriggers {
	ms := make([]manifest.Trigger, len(fl.Triggers))
	for i, t := range fl.Triggers {
		ms[i] = t.Manifest()
	}
	manifest.NormalizeTriggers(ms)
	ft := flowTriggers{all: ms}
	for i, t := range ms {
		sp := trigger.Spec{Kind: string(t.Kind), Every: t.Every.Std(), Schedule: t.Schedule, Topic: t.Topic, Path: t.Path}
		if t.Input != nil {
			sp.Message = mustJSON(t.Input)
		}
		ft.specs = append(ft.specs, sp)
		ft.modules = append(ft.modules, fl.Triggers[i].Module)
	}
	return ft
}

// flowTriggerRunID is the flow run id of a trigger's message: the time
// part of at, the rest a hash of key, so that the same tick or event
// makes the same id.
func flowTriggerRunID(at time.Time, key string) string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(at.UnixMilli())<<16)
	sum := sha256.Sum256([]byte(key))
	copy(b[6:], sum[:6])
	return runIDEncoding.EncodeToString(b[:])
}

// flowConsumerPrefix begins the names of flow id's durable consumers: no
// service's consumer names (ev_<service>_…) share it, service names
// being lowercase.
func flowConsumerPrefix(id string) string { return bus.ConsumerEventsPrefix + "FLOW_" + id + "_" }

// flowConsumerName names the consumer of flow id's event trigger on
// topic: by the topic alone (a flow has one trigger per topic), so that a
// version that moves the trigger in the list or sends it to another
// module keeps its consumer and its place in the stream.
func flowConsumerName(id, topic string) string {
	h := sha256.Sum256([]byte(topic))
	return flowConsumerPrefix(id) + hex.EncodeToString(h[:8])
}

// armFlowTriggers schedules e's cron triggers and starts its event
// triggers' loops; consumers of triggers its version no longer has are
// deleted, those it keeps resume where they were.
func (n *Node) armFlowTriggers(e *flowExec) {
	cron := false
	keep := map[string]bool{}
	for i, sp := range e.trig.specs {
		switch sp.Kind {
		case trigger.KindCron:
			cron = true
		case trigger.KindEvent:
			cname := flowConsumerName(e.id, sp.Topic)
			keep[cname] = true
			cons, err := n.flowConsumer(e.id, cname, sp.Topic)
			if err != nil {
				e.log.Error("flow event trigger not consuming", logTrigger, trigger.Name(i), "topic", sp.Topic, logErr, err)
				continue
			}
			ctx, cancel := context.WithCancel(n.ctx)
			l := &eventLoop{cancel: cancel, done: make(chan struct{})}
			go n.flowEventLoop(ctx, l.done, e, i, cons)
			e.trig.loops = append(e.trig.loops, l)
		}
	}
	if cron {
		if err := n.sched.Set(flowSchedPrefix+e.id, e.trig.specs); err != nil {
			e.log.Error("flow cron triggers not scheduled", logErr, err)
		}
	}
	n.deleteFlowConsumers(e.id, keep)
}

// disarmFlowTriggers unschedules e's cron triggers and stops its event
// loops, waiting for each; the consumers stay.
func (n *Node) disarmFlowTriggers(e *flowExec) {
	n.sched.Remove(flowSchedPrefix + e.id)
	for _, l := range e.trig.loops {
		l.stop()
	}
}

// flowConsumer creates the durable consumer cname of a flow's event
// trigger, or updates it keeping its place. Deliveries are not bounded: a
// message delivered again is one the flow's queue had no room for.
func (n *Node) flowConsumer(id, cname, topic string) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	return n.events.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       cname,
		Description:   "event trigger of flow " + id + " on " + topic,
		FilterSubject: bus.EventSubject(topic),
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 256,
	})
}

// deleteFlowConsumers deletes flow id's durable consumers not in keep.
func (n *Node) deleteFlowConsumers(id string, keep map[string]bool) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	names := n.events.stream.ConsumerNames(ctx)
	var stale []string
	for c := range names.Name() {
		if strings.HasPrefix(c, flowConsumerPrefix(id)) && !keep[c] {
			stale = append(stale, c)
		}
	}
	if err := names.Err(); err != nil {
		n.log.Warn("list event consumers", "flow", id, logErr, err)
	}
	for _, c := range stale {
		if err := n.events.stream.DeleteConsumer(ctx, c); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			n.log.Warn("delete event consumer", "flow", id, "consumer", c, logErr, err)
		}
	}
}

// flowEventLoop stores each event of trigger idx of e in the flow's
// queue, acknowledging it once stored, until ctx ends.
func (n *Node) flowEventLoop(ctx context.Context, done chan struct{}, e *flowExec, idx int, cons jetstream.Consumer) {
	defer close(done)
	name := trigger.Name(idx)
	log := e.log.With(logTrigger, name)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(32, jetstream.FetchMaxWait(time.Second))
		if err == nil {
			for msg := range batch.Messages() {
				n.flowEvent(ctx, log, e, idx, msg)
			}
			err = batch.Error()
		}
		if err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			log.Warn("fetch events", logErr, err)
			if !sleepCtx(ctx, time.Second) {
				return
			}
		}
	}
}

// flowEvent stores one event in e's queue and settles it: acknowledged
// once stored, delivered again a second later when the queue is full or
// the store failed, terminated when it is not an event a flow can take.
func (n *Node) flowEvent(ctx context.Context, log *slog.Logger, e *flowExec, idx int, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	data := msg.Data()
	if err := n.checkRawEvent(data); err != nil || len(data) > store.MaxFlowMessage {
		log.Warn("event not taken by the flow", "seq", meta.Sequence.Stream, logErr, err, "bytes", len(data))
		_ = msg.Term()
		return
	}
	name := trigger.Name(idx)
	m := store.FlowMessage{
		Run:    flowTriggerRunID(meta.Timestamp, fmt.Sprintf("%s\x00%s\x00event %d", e.id, name, meta.Sequence.Stream)),
		Module: e.trig.modules[idx], Message: data, At: time.Now().UTC(),
		By: fmt.Sprintf("%s (event %s #%d)", name, e.trig.specs[idx].Topic, meta.Sequence.Stream),
	}
	if _, err := n.store.EnqueueFlowMessage(ctx, e.id, m); err != nil {
		if !errors.Is(err, store.ErrFull) {
			log.Warn("event not stored in the flow's queue; delivered again", "seq", meta.Sequence.Stream, logErr, err)
		}
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Ack()
}

// flowTick stores the message of a flow's cron tick in its queue. A
// tick the queue has no room for is skipped, with the reason in the log.
func (n *Node) flowTick(id string, ev trigger.Event) {
	e := n.runningFlow(id)
	i := triggerIndex(ev.Trigger)
	if e == nil || i < 0 || i >= len(e.trig.modules) {
		return
	}
	m := store.FlowMessage{
		Run:    flowTriggerRunID(ev.At, fmt.Sprintf("%s\x00%s\x00tick %d", id, ev.Trigger, ev.At.UnixNano())),
		Module: e.trig.modules[i], Message: ev.Message, At: time.Now().UTC(),
		By: fmt.Sprintf("%s (cron tick at %s)", ev.Trigger, ev.At.Format(time.RFC3339)),
	}
	if _, err := n.store.EnqueueFlowMessage(n.ctx, id, m); err != nil {
		e.log.Warn("flow cron tick skipped: its message was not stored", logTrigger, ev.Trigger, "at", ev.At, logErr, err)
	}
}

// flowHookRoute is the http trigger of a running flow mounted at path.
func (n *Node) flowHookRoute(path string) (server.HookRoute, bool) {
	n.flows.mu.Lock()
	defer n.flows.mu.Unlock()
	for id, e := range n.flows.running {
		for i, t := range e.trig.all {
			if t.Kind != manifest.KindHTTP || t.Path != path {
				continue
			}
			r := server.HookRoute{Flow: id, Trigger: trigger.Name(i), Path: path, Methods: t.Methods, Auth: t.Auth}
			if secret := t.Auth.Secret(); secret != "" {
				if v, ok := n.secrets.value(secret); ok {
					r.Secret = v
				}
			}
			return r, true
		}
	}
	return server.HookRoute{}, false
}

// HookFlow implements server.HookBackend: store a request to a flow's
// webhook in the flow's queue, as a fire does, and answer with its flow
// run, queued.
func (n *Node) HookFlow(ctx context.Context, route server.HookRoute, method string, message json.RawMessage) (api.FlowRun, error) {
	e := n.runningFlow(route.Flow)
	i := triggerIndex(route.Trigger)
	if (e == nil && n.place == nil) || (e != nil && (i < 0 || i >= len(e.trig.modules))) {
		return api.FlowRun{}, server.Errorf(server.ErrConflict, "flow %s is stopped", route.Flow)
	}
	if err := n.gate.admit(workHook, "flow:"+route.Flow); err != nil {
		return api.FlowRun{}, &server.Error{Kind: server.ErrUnavailable, Msg: err.Error(), RetryAfter: retryUnavailable}
	}
	if len(message) > store.MaxFlowMessage {
		return api.FlowRun{}, server.Errorf(server.ErrTooLarge, "request: at most %d bytes as a flow's message, got %d", store.MaxFlowMessage, len(message))
	}
	if e == nil { // in a cluster, a flow another node runs
		return n.flowHookElsewhere(ctx, route, i, method, message)
	}
	m := store.FlowMessage{Run: newRunID(), Module: e.trig.modules[i], Message: message, At: time.Now().UTC(),
		By: fmt.Sprintf("%s (%s %s)", route.Trigger, method, route.Path)}
	return n.enqueueFlow(ctx, route.Flow, e.version, m, 0)
}

// flowHookConflicts lists the http triggers of fl whose paths a service,
// or another running flow, mounts.
func (n *Node) flowHookConflicts(fl *flow.Flow) []string {
	var out []string
	for i, t := range fl.Triggers {
		if t.Kind != string(manifest.KindHTTP) {
			continue
		}
		path := strings.TrimSpace(t.Path)
		if r, err := n.serviceHookRoute(path); err == nil {
			out = append(out, fmt.Sprintf("%s.path: %s is mounted by service %s (%s); a path serves one trigger", trigger.Name(i), path, r.Service, r.Trigger))
		} else if r, ok := n.flowHookRoute(path); ok && r.Flow != fl.ID {
			out = append(out, fmt.Sprintf("%s.path: %s is mounted by flow %s (%s); a path serves one trigger", trigger.Name(i), path, r.Flow, r.Trigger))
		} else if r, ok := n.clusterFlowHookRoute(path); ok && r.Flow != fl.ID {
			out = append(out, fmt.Sprintf("%s.path: %s is mounted by flow %s (%s) of the cluster; a path serves one trigger", trigger.Name(i), path, r.Flow, r.Trigger))
		} else if o, ok := n.hookOwnerOf(path); ok {
			out = append(out, fmt.Sprintf("%s.path: %s is mounted by service %s of the cluster; a path serves one trigger", trigger.Name(i), path, o.service))
		}
	}
	return out
}
