package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// Flow runs: a message enters a flow by its queue (a work-queue stream,
// one subject per flow), where it stays until its flow run has ended and
// its record is in the flow runs stream. A node that stops or crashes
// mid-run finds the message still queued when it starts the flow again.

// Bounds of the flow streams.
const (
	// FlowQueueDepth bounds the messages waiting in one flow's queue for
	// its entries, and those sent to each of its modules by name: a
	// message beyond it is refused (ErrFull), never held in memory.
	FlowQueueDepth = 10_000
	// MaxFlowMessage bounds one queued message, in bytes (its envelope
	// aside).
	MaxFlowMessage = 1 << 20
	// flowQueueBytes and flowRunsBytes cap the two streams, within what
	// the embedded JetStream's default 1 GiB leaves beside the other
	// streams (runs 512 MiB, events 256, logs 96, watch 32, flows 32,
	// revocations 16): a full queue refuses messages (ErrFull), full
	// records drop the oldest.
	flowQueueBytes = 48 << 20
	flowRunsBytes  = 24 << 20
	// MaxKeptInput bounds the input a flow run record keeps.
	MaxKeptInput = 16 << 10
	// FlowRunsPerFlow is how many flow run records are kept per flow.
	FlowRunsPerFlow = 10_000
)

// FlowMessage is a message queued for a flow: its flow run's id and what
// it carries.
type FlowMessage struct {
	// Run is the flow run's id, also the queue's message id.
	Run string `json:"run"`
	// Module is the entry module the message goes to; empty: every module
	// no wire leads to.
	Module string `json:"module,omitempty"`
	// Message is the message, JSON.
	Message json.RawMessage `json:"message,omitempty"`
	// At is when the node accepted it.
	At time.Time `json:"at"`
	// By names who sent it: a token's name, or a trigger.
	By string `json:"by,omitempty"`
	// RerunOf is the failed flow run this one re-runs from Module.
	RerunOf string `json:"rerun_of,omitempty"`
}

// QueuedFlowMessage is a FlowMessage as a flow's queue hands it out: Done
// removes it from the queue once its flow run is recorded.
type QueuedFlowMessage struct {
	FlowMessage
	// Seq is its sequence in the queue.
	Seq uint64
	msg jetstream.Msg
	q   *FlowQueueReader // the reader it was handed out by
}

// Done removes the message from its flow's queue.
func (m QueuedFlowMessage) Done(ctx context.Context) error { return m.msg.DoubleAck(ctx) }

// Retry has the queue hand m out again after delay (its flow run ended
// but was not recorded, or its message not removed): it runs again in
// this reader's window instead of holding a place in it for the day the
// queue waits for an answer.
func (m QueuedFlowMessage) Retry(delay time.Duration) error {
	if m.msg == nil {
		return nil
	}
	return m.msg.NakWithDelay(delay)
}

// From says whether q handed m out.
func (m QueuedFlowMessage) From(q *FlowQueueReader) bool { return m.q == q }

// Remove removes m from its flow's queue by its sequence, whoever holds
// its delivery: for a message whose queue was opened again after it was
// handed out (FlowQueue replaces the consumer, so Done on its delivery
// gets no answer) and before the new reader handed it out again. One
// already removed is no error.
func (m QueuedFlowMessage) Remove(ctx context.Context) error {
	if m.q == nil {
		return fmt.Errorf("store: message %d of a flow's queue: not handed out by a reader", m.Seq)
	}
	err := m.q.stream.DeleteMsg(ctx, m.Seq)
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("store: remove message %d of flow %s from its queue: %w", m.Seq, m.q.flow, err)
	}
	return nil
}

// FlowRun is the record of one flow run: the message's way through the
// flow and how it ended.
type FlowRun struct {
	ID      string    `json:"id"`
	Flow    string    `json:"flow"`
	Version string    `json:"version"`
	Start   time.Time `json:"start"`
	// Duration is from the message's acceptance to the run's end.
	Duration time.Duration `json:"duration_ns"`
	// Outcome is ok or failed.
	Outcome string `json:"outcome"`
	// Error says why a failed run failed, naming the module.
	Error string `json:"error,omitempty"`
	// Module is the module it failed at.
	Module string `json:"module,omitempty"`
	// Input is the message the flow run began with, when it is at most
	// MaxKeptInput bytes (InputCut says a larger one was not kept): a
	// rerun from an entry module sends it again.
	Input    json.RawMessage `json:"input,omitempty"`
	InputCut bool            `json:"input_cut,omitempty"`
	// RerunOf is the failed flow run this one re-ran.
	RerunOf string `json:"rerun_of,omitempty"`
	// By names who sent its message: a token's name, or the trigger that
	// started it.
	By string `json:"by,omitempty"`
	// DeadLetter says the message was aimed at a module the flow's
	// version running it does not have (a hot update removed it): it
	// failed without running, and is listed among the flow's dead
	// letters.
	DeadLetter bool `json:"dead_letter,omitempty"`
	// Steps are the module runs of the flow run, in the order they ended.
	Steps []FlowStep `json:"steps"`
	// Dropped lists the messages that ended at a port no wire leaves.
	Dropped []string `json:"dropped,omitempty"`
	// StepsCut is how many steps were left out of a record too large to
	// keep whole (the first 64 are kept, the dropped list is not).
	StepsCut int `json:"steps_cut,omitempty"`
	// Replayed says the run was taken up again after the node stopped
	// mid-run: module runs recorded before were not run again.
	Replayed bool `json:"replayed,omitempty"`
}

// FlowStep is one module run of a flow run.
type FlowStep struct {
	Module  string `json:"module"`
	Service string `json:"service"`
	Run     string `json:"run"`
	// Message is the id of the message the module took; From the module
	// run that sent it (empty for the flow's input).
	Message string `json:"message"`
	From    string `json:"from,omitempty"`
	Outcome string `json:"outcome"`
	// Queued is how long the message waited for the module.
	Queued time.Duration `json:"queued_ns"`
	// Reused says the module run was recorded before a replay and not
	// run again.
	Reused bool `json:"reused,omitempty"`
	// InWorker says the message reached the module inside the worker that
	// ran its sender (a same-worker hop), not through the node; Queued is
	// then the time from the sender's handler returning to this module's
	// starting, as the worker measured it.
	InWorker bool `json:"in_worker,omitempty"`
	// Runtime is where the module ran when not where its service runs: a
	// browser runtime (browser/ID).
	Runtime string `json:"runtime,omitempty"`
	// Note says why it ran elsewhere than its placement (failed over).
	Note string `json:"note,omitempty"`
}

// FlowQueueSubject is the subject of the messages queued for flow's
// entries.
func FlowQueueSubject(flow string) string { return bus.SubjectFlowQueuePrefix + flow }

// FlowModuleQueueSubject is the subject of the messages queued for
// module of flow by name: one subject per module, so that how many wait
// for each is the stream's count, read at once (a version that removes
// the module names them as its dead letters).
func FlowModuleQueueSubject(flow, module string) string {
	return bus.SubjectFlowQueuePrefix + flow + "." + module
}

// flowQueueSubjects are the subjects of all of flow's queued messages.
func flowQueueSubjects(flow string) []string {
	return []string{FlowQueueSubject(flow), FlowModuleQueueSubject(flow, "*")}
}

// FlowRunSubject is the subject of flow's run records.
func FlowRunSubject(flow string) string { return bus.SubjectFlowRunsPrefix + flow }

// createFlowStreams creates or updates the flow queue and flow runs
// streams.
func (s *Store) createFlowStreams(ctx context.Context) error {
	var err error
	s.flowQueue, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:                 bus.StreamFlowQueue,
		Description:          "andromeda messages waiting for their flow run, one subject per flow and one per module messages are sent to by name",
		Subjects:             []string{bus.SubjectFlowQueuePrefix + "*", bus.SubjectFlowQueuePrefix + "*.*"},
		Storage:              jetstream.FileStorage,
		Retention:            jetstream.WorkQueuePolicy,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    FlowQueueDepth,
		MaxBytes:             flowQueueBytes,
		MaxMsgSize:           MaxFlowMessage + 8192, // the envelope and headers beside the message
		Duplicates:           2 * time.Minute,
		Replicas:             s.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", bus.StreamFlowQueue, err)
	}
	s.flowRuns, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              bus.StreamFlowRuns,
		Description:       "andromeda flow run records, one subject per flow",
		Subjects:          []string{bus.SubjectFlowRunsPrefix + "*"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: FlowRunsPerFlow,
		MaxBytes:          flowRunsBytes,
		MaxMsgSize:        int32(s.cfg.MaxRunBytes),
		Duplicates:        2 * time.Minute,
		Replicas:          s.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", bus.StreamFlowRuns, err)
	}
	return nil
}

// EnqueueFlowMessage queues m for flow and returns once JetStream holds
// it. A flow whose queue is full fails it with ErrFull; m.Run is the
// message id, so a retried enqueue is stored once.
func (s *Store) EnqueueFlowMessage(ctx context.Context, flow string, m FlowMessage) (uint64, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	b, err := json.Marshal(m)
	if err != nil {
		return 0, fmt.Errorf("store: encode flow message %s: %w", m.Run, err)
	}
	if len(m.Message) > MaxFlowMessage || len(b) > MaxFlowMessage+4096 {
		return 0, fmt.Errorf("store: flow message %s: %d bytes, at most %d", m.Run, len(m.Message), MaxFlowMessage)
	}
	subject := FlowQueueSubject(flow)
	if m.Module != "" {
		subject = FlowModuleQueueSubject(flow, m.Module)
	}
	msg := &nats.Msg{Subject: subject, Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, m.Run)
	ack, err := s.js.PublishMsg(ctx, msg)
	switch {
	case err != nil && (strings.Contains(err.Error(), "maximum messages") || strings.Contains(err.Error(), "maximum bytes") || errors.Is(err, jetstream.ErrMaxBytesExceeded)):
		return 0, fmt.Errorf("store: flow %s: its queue is full (%d messages waiting at most): %w", flow, FlowQueueDepth, ErrFull)
	case err != nil:
		return 0, s.deadline(ctx, fmt.Errorf("store: queue a message for flow %s: %w", flow, err))
	}
	return ack.Sequence, nil
}

// FlowQueue opens flow's queue from its oldest waiting message: every
// message not yet Done, in order, then each new one. It replaces the
// consumer a previous FlowQueue made, so messages handed out before and
// not done (a node that stopped mid-run) come again at once. last is the
// queue's last sequence when it opened: a message up to it may have been
// handed out before.
func (s *Store) FlowQueue(ctx context.Context, flow string, window int) (q *FlowQueueReader, last uint64, err error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	name := flowConsumer(flow)
	if err := s.flowQueue.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, 0, s.deadline(ctx, fmt.Errorf("store: reopen the queue of flow %s: %w", flow, err))
	}
	info, err := s.flowQueue.Info(ctx)
	if err != nil {
		return nil, 0, s.deadline(ctx, fmt.Errorf("store: the queue of flow %s: %w", flow, err))
	}
	c, err := s.flowQueue.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:        name,
		FilterSubjects: flowQueueSubjects(flow),
		AckPolicy:      jetstream.AckExplicitPolicy,
		// Messages are handed out again only when the queue is opened
		// again: a flow run takes as long as its modules do.
		AckWait:       24 * time.Hour,
		MaxAckPending: window,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, 0, s.deadline(ctx, fmt.Errorf("store: open the queue of flow %s: %w", flow, err))
	}
	return &FlowQueueReader{c: c, stream: s.flowQueue, flow: flow, created: c.CachedInfo().Created}, info.State.LastSeq, nil
}

// CloseFlowQueue removes flow's queue consumer; its messages stay queued.
func (s *Store) CloseFlowQueue(ctx context.Context, flow string) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if err := s.flowQueue.DeleteConsumer(ctx, flowConsumer(flow)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return s.deadline(ctx, fmt.Errorf("store: close the queue of flow %s: %w", flow, err))
	}
	return nil
}

// PurgeFlowQueue drops every message waiting in flow's queue (the flow is
// removed) and returns how many there were.
func (s *Store) PurgeFlowQueue(ctx context.Context, flow string) (uint64, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if err := s.flowQueue.DeleteConsumer(ctx, flowConsumer(flow)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, s.deadline(ctx, fmt.Errorf("store: purge the queue of flow %s: %w", flow, err))
	}
	n, err := s.FlowQueueDepth(ctx, flow)
	if err != nil {
		return 0, err
	}
	for _, subject := range flowQueueSubjects(flow) {
		if err := s.flowQueue.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return 0, s.deadline(ctx, fmt.Errorf("store: purge the queue of flow %s: %w", flow, err))
		}
	}
	return n, nil
}

// FlowQueueDepth is how many messages wait in flow's queue, those being
// run included.
func (s *Store) FlowQueueDepth(ctx context.Context, flow string) (uint64, error) {
	targets, err := s.QueuedFlowTargets(ctx, flow)
	var n uint64
	for _, k := range targets {
		n += uint64(k)
	}
	return n, err
}

// QueuedFlowTargets counts the messages waiting in flow's queue (those
// being run included) by the module each is aimed at ("" for the flow's
// entries), from the stream's counts by subject, without reading them.
func (s *Store) QueuedFlowTargets(ctx context.Context, flow string) (map[string]int, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	out := map[string]int{}
	for _, subject := range flowQueueSubjects(flow) {
		info, err := s.flowQueue.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return nil, s.deadline(ctx, fmt.Errorf("store: the queue of flow %s: %w", flow, err))
		}
		for subj, k := range info.State.Subjects {
			module := strings.TrimPrefix(strings.TrimPrefix(subj, FlowQueueSubject(flow)), ".")
			if k > 0 {
				out[module] += int(k)
			}
		}
	}
	return out, nil
}

// flowConsumer names flow's queue consumer (flow ids have no "_").
func flowConsumer(flow string) string { return "flow_" + flow }

// FlowQueueReader hands out a flow's queued messages in order.
type FlowQueueReader struct {
	c       jetstream.Consumer
	stream  jetstream.Stream
	flow    string
	created time.Time // when the consumer was made: a queue opened again makes another
	// delivered is the consumer's sequence of the last message handed
	// out: the next must follow it, or one was lost on its way.
	delivered uint64
}

// ErrQueueGap says a flow's queue handed a message out that never reached
// its reader: a pull answered after the reader stopped waiting for it (a
// store electing a leader delays answers). The message stays held for
// the reader that lost it, and the ones after it must wait for it, so
// the queue is to be opened again (FlowQueue), which hands out every
// message not done again, in order.
var ErrQueueGap = errors.New("a message of the queue was lost on its way")

// Opened says whether the queue is still the one this reader opened: in
// a cluster the node that takes a flow over opens its queue again, and
// the reader of the node that ran it before must stop taking from it.
// lost says the queue handed out a message that never reached this
// reader (see ErrQueueGap); it is meaningful only while no Take is in
// progress. An error says the store did not answer.
func (q *FlowQueueReader) Opened(ctx context.Context) (opened, lost bool, err error) {
	info, err := q.c.Info(ctx)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return false, false, nil
	case err != nil:
		return false, false, fmt.Errorf("store: the queue of flow %s: %w", q.flow, err)
	}
	opened = info.Created.Equal(q.created)
	return opened, opened && info.Delivered.Consumer > q.delivered, nil
}

// Next waits up to wait for the next message; ok is false when none came.
// A message that does not decode is removed from the queue and reported
// as an error wrapping ErrDamaged.
func (q *FlowQueueReader) Next(wait time.Duration) (m QueuedFlowMessage, ok bool, err error) {
	err = q.Take(1, wait, func(qm QueuedFlowMessage) { m, ok = qm, true })
	return m, ok, err
}

// Take hands each of the next messages, at most max of them, to each as
// it arrives, in order, waiting up to wait for them in all: one pull from
// the store. A message that does not decode is removed from the queue and
// reported as an error wrapping ErrDamaged, after the others. A message
// that follows one lost on its way is not handed out: Take fails with
// ErrQueueGap, and the queue is to be opened again.
func (q *FlowQueueReader) Take(max int, wait time.Duration, each func(QueuedFlowMessage)) error {
	batch, err := q.c.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return fmt.Errorf("store: read the queue of flow %s: %w", q.flow, err)
	}
	var damaged, gap error
	for msg := range batch.Messages() {
		if gap != nil {
			continue // held: the queue opened again hands it out again
		}
		m := QueuedFlowMessage{msg: msg, q: q}
		if meta, err := msg.Metadata(); err == nil {
			m.Seq = meta.Sequence.Stream
			if meta.Sequence.Consumer > q.delivered+1 {
				gap = fmt.Errorf("store: flow %s: %d of the queue's deliveries before message %d never came: %w",
					q.flow, meta.Sequence.Consumer-q.delivered-1, m.Seq, ErrQueueGap)
				continue
			}
			q.delivered = meta.Sequence.Consumer
		}
		if err := json.Unmarshal(msg.Data(), &m.FlowMessage); err != nil || m.Run == "" {
			_ = msg.Term()
			damaged = errors.Join(damaged, fmt.Errorf("store: message %d of flow %s does not decode: %w", m.Seq, q.flow, ErrDamaged))
			continue
		}
		each(m)
	}
	if damaged != nil || gap != nil {
		return errors.Join(gap, damaged)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return fmt.Errorf("store: read the queue of flow %s: %w", q.flow, err)
	}
	return nil
}

// PutFlowRun records a flow run; its id is the message id, so a record
// written again (a replayed run) is stored once within two minutes.
func (s *Store) PutFlowRun(ctx context.Context, r FlowRun) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: encode flow run %s: %w", r.ID, err)
	}
	if len(b) > s.cfg.MaxRunBytes-512 {
		// The steps of a very long run are cut, the outcome kept.
		r.StepsCut = len(r.Steps) - min(len(r.Steps), 64)
		if r.Input != nil {
			r.Input, r.InputCut = nil, true
		}
		r.Steps, r.Dropped = r.Steps[:min(len(r.Steps), 64)], nil
		if len(r.Error) > 4096 {
			r.Error = r.Error[:4096] + "…"
		}
		if b, err = json.Marshal(r); err != nil {
			return fmt.Errorf("store: encode flow run %s: %w", r.ID, err)
		}
	}
	msg := &nats.Msg{Subject: FlowRunSubject(r.Flow), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, r.ID)
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return s.deadline(ctx, fmt.Errorf("store: record flow run %s of %s: %w", r.ID, r.Flow, err))
	}
	return nil
}

// FlowRuns returns the last limit run records of flow, newest first.
func (s *Store) FlowRuns(ctx context.Context, flow string, limit int) ([]FlowRun, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	info, err := s.flowRuns.Info(ctx, jetstream.WithSubjectFilter(FlowRunSubject(flow)))
	if err != nil {
		return nil, s.deadline(ctx, fmt.Errorf("store: runs of flow %s: %w", flow, err))
	}
	total := info.State.Subjects[FlowRunSubject(flow)]
	if total == 0 || limit <= 0 {
		return []FlowRun{}, nil
	}
	skip := uint64(0)
	if total > uint64(limit) {
		skip = total - uint64(limit)
	}
	// A reading consumer of its own, deleted at the end (the inactivity
	// threshold is the backstop): a listing asked for every moment (a
	// dashboard, a script waiting for a run) must not pile consumers up
	// to the server's limit.
	c, err := createReader(ctx, s.flowRuns, jetstream.ConsumerConfig{
		FilterSubject: FlowRunSubject(flow), DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute, MemoryStorage: true,
	})
	if err != nil {
		return nil, s.deadline(ctx, fmt.Errorf("store: runs of flow %s: %w", flow, err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s.flowRuns.DeleteConsumer(dctx, c.CachedInfo().Name)
	}()
	out := make([]FlowRun, 0, min(total, uint64(limit)))
	var seen uint64
	for seen < total {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("store: runs of flow %s: %w", flow, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			seen++
			if seen <= skip {
				continue
			}
			var r FlowRun
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				if s.cfg.Repair {
					continue
				}
				return nil, fmt.Errorf("store: a run of flow %s does not decode: %w", flow, ErrDamaged)
			}
			out = append(out, r)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("store: runs of flow %s: %w", flow, err)
		}
		if n == 0 {
			break
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// PurgeFlowRuns drops flow's run records (the flow is removed).
func (s *Store) PurgeFlowRuns(ctx context.Context, flow string) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if err := s.flowRuns.Purge(ctx, jetstream.WithPurgeSubject(FlowRunSubject(flow))); err != nil {
		return s.deadline(ctx, fmt.Errorf("store: purge the runs of flow %s: %w", flow, err))
	}
	return nil
}

// FlowRun returns flow's run record id, among the last FlowRunsPerFlow.
func (s *Store) FlowRun(ctx context.Context, flow, id string) (FlowRun, error) {
	rs, err := s.FlowRuns(ctx, flow, FlowRunsPerFlow)
	if err != nil {
		return FlowRun{}, err
	}
	for _, r := range rs {
		if r.ID == id {
			return r, nil
		}
	}
	return FlowRun{}, fmt.Errorf("store: flow %s has no run %s among its last %d: %w", flow, id, FlowRunsPerFlow, ErrNotFound)
}
