package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/flow"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Running flows (the runner API's startFlow and stopFlow). A message
// enters a flow through its queue in the store (fire: it is stored before
// it is answered) and stays there until its flow run has ended and its
// record is stored. The node takes up to flowWindow flow runs of a flow at
// once; each module has one worker that runs its messages one at a time,
// in the order they came, so each wire is FIFO. A module's emits to a
// port go to the modules wired from it, through the node (JSON), each as a
// run of the module's service with the trigger kind flow.
//
// A module run's id is derived from its flow run, module and message, so
// a flow run taken up again after the node stopped mid-run (its message
// is still queued) reuses the module runs recorded before instead of
// running them again: nothing accepted is lost, nothing applied twice.

// Bounds of a running flow.
const (
	// flowWindow is how many flow runs of one flow are in flight at once;
	// the rest wait in the flow's queue, in the store.
	flowWindow = 64
	// maxFlowRunMessages bounds the messages of one flow run (fan-out and
	// loops included): a run beyond it fails.
	maxFlowRunMessages = 10_000
	// maxWaitingBytes bounds the messages of one flow waiting at its
	// modules, in memory: an emit that would pass it fails its flow run,
	// and no new flow run is taken above half of it.
	maxWaitingBytes = 64 << 20
	// flowDrain bounds how long a stop waits for the flow runs in flight;
	// those still running are taken up again at the next start.
	flowDrain = 30 * time.Second
)

// flowEngine is the node's running flows.
type flowEngine struct {
	mu      sync.Mutex
	running map[string]*flowExec
	// leftover is, for a flow this node ran and stopped, the last queue
	// sequence of a flow run that did not end by the stop (0: all did):
	// only messages up to it may have run before when it starts again.
	leftover map[string]uint64
	waiters  map[string][]chan flowResult // by flow run id
}

// flowResult is what a waiting fire learns of its flow run.
type flowResult struct {
	run store.FlowRun
	err error
}

// flowExec is one running flow.
type flowExec struct {
	n       *Node
	log     *slog.Logger
	id      string
	version string
	owner   string // who applied the flow: "operator" or a submitter
	modules map[string]*moduleExec
	wires   map[flow.End][]wireDest // from an output port
	byIndex []flow.End              // each wire's from end, by its index
	entries []string                // the modules no wire leads to but loops
	q       *store.FlowQueueReader  // replaced under mu by take's goroutine, which alone reads it without mu
	replay  uint64                  // messages up to this sequence may have run before
	// lostSeen says the last check of the queue found a message lost on
	// its way (checkQueue); take's goroutine only.
	lostSeen bool
	trig     flowTriggers // its cron and event triggers

	quit chan struct{} // closed: take no more messages from the queue
	halt chan struct{} // closed: workers stop after their current module run
	wg   sync.WaitGroup
	// ending counts the flow runs being recorded: a flow run ends off the
	// worker of its last module, which goes on with its next message
	// meanwhile.
	ending sync.WaitGroup

	fctx flowContext // the flow's context (flowcontext.go)

	waiting atomic.Int64 // bytes of the messages waiting at the modules

	mu     sync.Mutex
	active map[string]*flowRunState
	taken  uint64 // the last queue sequence taken
	// unsettled is the last queue sequence of a flow run that ended but
	// was not recorded, or whose message was not removed: a message up to
	// it handed out again may have run before, and is a replay.
	unsettled uint64
	idle      chan struct{} // signalled when a flow run ends
}

// wireDest is where a wire from an output port leads.
type wireDest struct {
	index int // the wire's index in the flow
	to    flow.End
	loop  int
}

// moduleExec is one module of a running flow and its queue.
type moduleExec struct {
	id, service string
	// owner is whose service the module runs, once known: a name removed
	// and submitted again by another submitter is not the service the
	// flow was applied with.
	owner   string
	config  map[string]any
	browser *browserPlacement // placed on a browser runtime; nil: where its service runs
	// turn is held while the module runs a message: its worker's run and
	// a single step take turns, so the module runs one message at a time.
	turn sync.Mutex

	mu     sync.Mutex
	queue  []*flowMsg
	busy   bool // the worker took a message and has not finished its step
	held   bool // a breakpoint: the worker takes nothing, a step does
	signal chan struct{}
	rate   moduleRate
	bytes  *atomic.Int64 // the flow's waiting bytes, this module's among them
}

// moduleRate counts a module's runs: in all, failed, and per second over
// the last minute (a ring of 60 one-second buckets).
type moduleRate struct {
	ran, failed uint64
	secs        [60]uint64
	stamp       [60]int64 // the Unix second each bucket counts
}

// note counts one run ending at now.
func (r *moduleRate) note(now time.Time, failed bool) {
	r.ran++
	if failed {
		r.failed++
	}
	sec := now.Unix()
	i := sec % 60
	if r.stamp[i] != sec {
		r.stamp[i], r.secs[i] = sec, 0
	}
	r.secs[i]++
}

// lastMinute is how many runs ended in the 60 seconds before now.
func (r *moduleRate) lastMinute(now time.Time) uint64 {
	var n uint64
	sec := now.Unix()
	for i := range r.secs {
		if age := sec - r.stamp[i]; age >= 0 && age < 60 {
			n += r.secs[i]
		}
	}
	return n
}

// rates is m's counts at now: ran, failed, in the last minute.
func (m *moduleExec) rates(now time.Time) (ran, failed, minute uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rate.ran, m.rate.failed, m.rate.lastMinute(now)
}

// counted notes one of m's runs.
func (m *moduleExec) counted(failed bool) {
	m.mu.Lock()
	m.rate.note(time.Now(), failed)
	m.mu.Unlock()
}

// flowMsg is a message on its way to a module.
type flowMsg struct {
	fr      *flowRunState
	id      string // derived from the flow run, the sending module run and the emit
	port    string
	from    string // the sending module; empty for the flow's input
	fromRun string
	message json.RawMessage
	loops   map[int]int // rounds taken through each loop wire
	queued  time.Time
}

// flowRunState is a flow run in flight.
type flowRunState struct {
	qm     store.QueuedFlowMessage
	replay bool

	mu       sync.Mutex
	rec      store.FlowRun
	pending  int    // messages not yet taken by a module
	messages int    // messages so far
	ctxWrite uint64 // the last write of the flow context its module runs made (flowcontext.go)
	// again is its message as handed out again by the queue opened again
	// while it ran (reopen): the newest delivery is the one removed.
	again []store.QueuedFlowMessage
}

// wroteContext notes that one of fr's module runs made write w of the
// flow context: fr ends once it is stored.
func (fr *flowRunState) wroteContext(w uint64) {
	fr.mu.Lock()
	fr.ctxWrite = max(fr.ctxWrite, w)
	fr.mu.Unlock()
}

// startFlow runs flow r: its queue is opened from the oldest message not
// done, and each module's worker starts.
func (n *Node) startFlow(ctx context.Context, r store.FlowRecord) error {
	fl, err := decodeFlow(r)
	if err != nil {
		return err
	}
	e := &flowExec{n: n, log: n.log.With("flow", r.ID, "version", r.Version), id: r.ID, version: r.Version, owner: r.Owner,
		modules: map[string]*moduleExec{}, wires: map[flow.End][]wireDest{},
		quit: make(chan struct{}), halt: make(chan struct{}), active: map[string]*flowRunState{}, idle: make(chan struct{}, 1)}
	fed := map[string]bool{}
	resolveInline(&fl)
	for _, m := range fl.Modules {
		e.modules[m.ID] = &moduleExec{id: m.ID, service: m.Service, config: m.Config, browser: newBrowserPlacement(m),
			held: slices.Contains(r.Breakpoints, m.ID), signal: make(chan struct{}, 1), bytes: &e.waiting}
	}
	for i, w := range fl.Wires {
		from, _ := flow.ParseEnd(w.From, flow.PortOut)
		to, _ := flow.ParseEnd(w.To, flow.PortIn)
		e.wires[from] = append(e.wires[from], wireDest{index: i, to: to, loop: w.Loop})
		e.byIndex = append(e.byIndex, from)
		if w.Loop == 0 {
			fed[to.Module] = true
		}
	}
	for _, m := range fl.Modules {
		if !fed[m.ID] {
			e.entries = append(e.entries, m.ID)
		}
	}
	e.trig = flowTriggerSpecs(&fl)
	fctx, err := n.loadFlowContext(ctx, r.ID, fl.Context)
	if err != nil {
		return err
	}
	e.fctx.load(fctx)
	q, last, err := n.store.FlowQueue(ctx, r.ID, flowWindow)
	if err != nil {
		return err
	}
	e.q, e.replay = q, last

	n.flows.mu.Lock()
	if n.flows.running == nil {
		n.flows.running, n.flows.leftover = map[string]*flowExec{}, map[string]uint64{}
	}
	// What this node knows of the flow's last run here narrows the
	// replay, on a node alone: in a cluster another node may have run
	// the flow since, and every message queued may have run before.
	if left, ok := n.flows.leftover[r.ID]; ok && n.place == nil {
		e.replay = min(left, last)
	}
	delete(n.flows.leftover, r.ID)
	if old := n.flows.running[r.ID]; old != nil {
		n.flows.mu.Unlock()
		return fmt.Errorf("flow %s is running already", r.ID)
	}
	n.flows.running[r.ID] = e
	for _, m := range e.modules {
		e.wg.Go(func() { e.work(m) })
	}
	e.wg.Go(e.take)
	n.flows.mu.Unlock()
	// Outside the lock: a tick or an event looks the flow up.
	n.armFlowTriggers(e)
	e.log.Info("flow started", "modules", len(e.modules), "entries", e.entries, "triggers", len(e.trig.specs), "replay_up_to", e.replay)
	return nil
}

// stopFlow stops flow id if it runs: no more messages are taken from its
// queue; with drain, the flow runs in flight may end first (up to
// flowDrain). What does not end stays queued and runs at the next start.
func (n *Node) stopFlow(id string, drain bool) {
	n.flows.mu.Lock()
	e := n.flows.running[id]
	delete(n.flows.running, id)
	n.flows.mu.Unlock()
	if e == nil {
		return
	}
	n.disarmFlowTriggers(e)
	close(e.quit)
	if drain && (e.holding() || e.awaitingPage()) {
		// Messages held at a breakpoint, or waiting for a browser page
		// that is away, would keep the stop waiting: they stay queued and
		// run again at the next start instead.
		drain = false
	}
	if drain {
		deadline := time.After(flowDrain)
		// take may have had the last idle signal: look again every 20ms.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
	wait:
		for e.inFlight() > 0 {
			select {
			case <-e.idle:
			case <-tick.C:
			case <-deadline:
				e.log.Warn("flow runs still in flight after the stop's wait; they run again at the next start", "in_flight", e.inFlight())
				break wait
			}
		}
	}
	close(e.halt)
	e.wg.Wait()
	e.ending.Wait()
	e.flushContext()
	var left uint64
	e.mu.Lock()
	for _, fr := range e.active {
		left = max(left, fr.qm.Seq)
	}
	e.mu.Unlock()
	left = max(left, e.replayLeft())
	e.mu.Lock()
	left = max(left, e.unsettled)
	e.mu.Unlock()
	n.flows.mu.Lock()
	n.flows.leftover[id] = left
	n.flows.mu.Unlock()
	e.log.Info("flow stopped", "drained", drain, "left_in_flight", e.inFlight())
}

// stopFlows stops every running flow without waiting for flow runs: the
// node is closing; what did not end runs again at its next start. It
// holds the flow lock, as every stop does (a start, a claim or a step
// does not slip in beside it).
func (n *Node) stopFlows() error {
	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	n.flows.mu.Lock()
	ids := make([]string, 0, len(n.flows.running))
	for id := range n.flows.running {
		ids = append(ids, id)
	}
	n.flows.mu.Unlock()
	for _, id := range ids {
		n.stopFlow(id, false)
	}
	return nil
}

// runningFlow is flow id's exec, or nil.
func (n *Node) runningFlow(id string) *flowExec {
	n.flows.mu.Lock()
	defer n.flows.mu.Unlock()
	return n.flows.running[id]
}

// startFlows starts the flows marked running, at the node's start.
func (n *Node) startFlows(ctx context.Context) error {
	recs, err := n.store.Flows(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if !r.Running {
			continue
		}
		if n.place != nil {
			continue // the flow pass claims it, then starts it (cluster_flow.go)
		}
		if err := n.startFlow(ctx, r); err != nil {
			n.log.Error("flow not started", "flow", r.ID, logErr, err)
		}
	}
	n.undo = append(n.undo, n.stopFlows)
	return nil
}

// replayLeft is the part of the replay range this exec did not reach: a
// message up to e.replay it never took may still have run before.
func (e *flowExec) replayLeft() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.taken < e.replay {
		return e.replay
	}
	return 0
}

func (e *flowExec) inFlight() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.active)
}

// take hands the flow's queued messages to its entry modules, at most
// flowWindow flow runs at once.
func (e *flowExec) take() {
	var checked time.Time
	for {
		select {
		case <-e.quit:
			return
		default:
		}
		if time.Since(checked) > queueCheck {
			checked = time.Now()
			if e.checkQueue() {
				return
			}
		}
		if e.inFlight() >= flowWindow || e.waiting.Load() > maxWaitingBytes/2 {
			select {
			case <-e.idle:
			case <-e.quit:
				return
			}
			continue
		}
		// The messages there are begin as they arrive; the pull stays
		// open for more up to the window's free places.
		err := e.q.Take(flowWindow-e.inFlight(), 500*time.Millisecond, e.safeBegin)
		if errors.Is(err, store.ErrQueueGap) {
			e.log.Warn("flow queue: a message was lost on its way from the store; the queue is opened again so that it runs in its turn", logErr, err)
			if e.reopen() {
				continue
			}
		}
		if err != nil {
			e.log.Warn("flow queue", logErr, err)
			select {
			case <-e.quit:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// queueCheck is how often a running flow checks its queue: in a cluster,
// that it is still the one it opened; and that no message handed out was
// lost on its way (store.ErrQueueGap) with none after it to show it.
const queueCheck = 250 * time.Millisecond

// checkQueue checks e's queue between two takes and says whether e must
// take nothing more: another node opened the queue again (it took the
// flow over), and e is stopped, its flow runs in flight ending as in a
// node's stop (the node that took the flow over runs them again, reusing
// what they recorded). A message lost on its way, seen at two checks in
// a row, has the queue opened again.
func (e *flowExec) checkQueue() bool {
	ctx, cancel := context.WithTimeout(e.n.ctx, 2*time.Second)
	defer cancel()
	opened, lost, err := e.q.Opened(ctx)
	if err != nil {
		e.lostSeen = false
		return false // unanswered: the flow pass decides
	}
	if !opened && e.n.place != nil {
		e.log.Warn("cluster: the flow's queue was opened by another node, which took the flow over: stopped here")
		go func() {
			e.n.flowsMu.Lock()
			defer e.n.flowsMu.Unlock()
			if e.n.runningFlow(e.id) == e {
				e.n.stopFlow(e.id, false)
			}
		}()
		return true
	}
	if lost && e.lostSeen {
		e.log.Warn("flow queue: a message was lost on its way from the store; the queue is opened again so that it runs")
		e.reopen()
	}
	e.lostSeen = lost
	return false
}

// reopen opens e's queue again (store.FlowQueue) after a message was lost
// on its way: every message not done is handed out again, in order; the
// ones in flight here are not begun twice (begin). In a cluster it is
// done only while the store's leader says the flow is still this node's.
func (e *flowExec) reopen() bool {
	e.lostSeen = false
	ctx, cancel := context.WithTimeout(e.n.ctx, 10*time.Second)
	defer cancel()
	if e.n.place != nil {
		r, err := e.n.store.FlowAtLeader(ctx, e.id)
		if err != nil {
			e.log.Warn("flow queue not opened again yet: the store's leader did not say whose the flow is; tried again", logErr, err)
			return false
		}
		if !r.Running || r.Node != e.n.cfg.Name {
			e.log.Warn("flow queue not opened again: the flow is no longer this node's (the flow pass stops it here)", "node", r.Node, "running", r.Running)
			return false
		}
	}
	q, last, err := e.n.store.FlowQueue(ctx, e.id, flowWindow)
	if err != nil {
		e.log.Warn("flow queue not opened again; tried again at the next check", logErr, err)
		return false
	}
	e.mu.Lock()
	e.q, e.replay = q, max(e.replay, last)
	e.mu.Unlock()
	return true
}

// safeBegin is begin, a panic in it failing the flow run (its message
// stays queued) and never the node.
func (e *flowExec) safeBegin(m store.QueuedFlowMessage) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("panic starting a flow run; its message stays queued for the next start", "flow_run", m.Run, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	e.begin(m)
}

// begin starts the flow run of m.
func (e *flowExec) begin(m store.QueuedFlowMessage) {
	fr := &flowRunState{qm: m, rec: store.FlowRun{ID: m.Run, Flow: e.id, Version: e.version, Start: m.At, Steps: []store.FlowStep{}}}
	fr.rec.RerunOf, fr.rec.By = m.RerunOf, m.By
	if len(m.Message) <= store.MaxKeptInput {
		fr.rec.Input = m.Message
	} else {
		fr.rec.InputCut = true
	}
	targets := e.entries
	if m.Module != "" {
		targets = []string{m.Module}
	}
	e.mu.Lock()
	if running := e.active[m.Run]; running != nil {
		// Handed out again by the queue opened again (reopen) while its
		// flow run is in flight: that run removes it once recorded.
		running.mu.Lock()
		running.again = append(running.again, m)
		running.mu.Unlock()
		e.mu.Unlock()
		return
	}
	fr.replay = m.Seq <= e.replay || m.Seq <= e.unsettled
	fr.rec.Replayed = fr.replay
	e.active[m.Run] = fr
	e.taken = max(e.taken, m.Seq)
	e.mu.Unlock()
	var sends []*flowMsg
	for _, id := range targets {
		if e.modules[id] == nil {
			fr.fail(id, fmt.Sprintf("the flow's input names module %s, which version %s of the flow does not have", id, e.version))
			fr.mu.Lock()
			fr.rec.DeadLetter = true
			fr.mu.Unlock()
			continue
		}
		sends = append(sends, &flowMsg{fr: fr, id: m.Run, port: flow.PortIn, message: m.Message, queued: time.Now()})
	}
	fr.mu.Lock()
	fr.pending += len(sends)
	fr.messages += len(sends)
	fr.mu.Unlock()
	for i, s := range sends {
		e.modules[targets[i]].push(s)
	}
	if len(sends) == 0 {
		e.endLater(fr)
	}
}

func (m *moduleExec) push(msg *flowMsg) {
	m.bytes.Add(int64(len(msg.message)))
	m.mu.Lock()
	m.queue = append(m.queue, msg)
	m.mu.Unlock()
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

// pop is the module's next message, or nil once halt is closed. A held
// module gives none until its breakpoint is removed.
func (m *moduleExec) pop(halt <-chan struct{}) *flowMsg {
	for {
		m.mu.Lock()
		if len(m.queue) > 0 && !m.held {
			msg := m.queue[0]
			m.queue[0] = nil
			m.queue = m.queue[1:]
			m.busy = true
			m.mu.Unlock()
			m.bytes.Add(-int64(len(msg.message)))
			return msg
		}
		m.mu.Unlock()
		select {
		case <-m.signal:
		case <-halt:
			return nil
		}
	}
}

// depth is how many messages wait for the module.
func (m *moduleExec) depth() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue)
}

// work runs m's messages one at a time until the flow halts.
func (e *flowExec) work(m *moduleExec) {
	for {
		msg := m.pop(e.halt)
		if msg == nil {
			return
		}
		m.turn.Lock()
		e.step(m, msg, nil)
		m.mu.Lock()
		m.busy = false
		m.mu.Unlock()
		m.turn.Unlock()
	}
}

// setHeld sets or removes m's breakpoint.
func (m *moduleExec) setHeld(held bool) {
	m.mu.Lock()
	m.held = held
	m.mu.Unlock()
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

// holding says whether a breakpoint holds a message of e.
func (e *flowExec) holding() bool {
	for _, m := range e.modules {
		m.mu.Lock()
		h := m.held && len(m.queue) > 0
		m.mu.Unlock()
		if h {
			return true
		}
	}
	return false
}

// stepOut is what one module run of a single step took and gave.
type stepOut struct {
	input   json.RawMessage
	run     string
	outputs []stepEmit
	errors  []string
}

type stepEmit struct {
	port    string
	message json.RawMessage
	to      []string // the modules it went to; none: dropped
}

// maxStepMessages bounds the messages one module runs in a single step.
const maxStepMessages = 100

// singleStep advances each message held at a breakpoint one module: every
// held module runs the messages it held when the step began (up to
// maxStepMessages each), in order, and what they emit goes on as usual
// (to be held again where the next module has a breakpoint). The answer
// is by module, each message's input, run, outputs and errors.
func (e *flowExec) singleStep() map[string][]stepOut {
	counts := map[string]int{}
	for id, m := range e.modules {
		m.mu.Lock()
		if m.held && len(m.queue) > 0 {
			counts[id] = min(len(m.queue), maxStepMessages)
		}
		m.mu.Unlock()
	}
	out := map[string][]stepOut{}
	for _, id := range slices.Sorted(maps.Keys(counts)) {
		m := e.modules[id]
		if why := e.pageAway(m); why != "" {
			// A step does not wait for a page: the messages stay held.
			out[id] = append(out[id], stepOut{errors: []string{why}})
			continue
		}
		for range counts[id] {
			m.turn.Lock()
			m.mu.Lock()
			var msg *flowMsg
			if len(m.queue) > 0 {
				msg = m.queue[0]
				m.queue[0] = nil
				m.queue = m.queue[1:]
				m.bytes.Add(-int64(len(msg.message)))
			}
			m.mu.Unlock()
			if msg == nil {
				m.turn.Unlock()
				break
			}
			so := &stepOut{input: msg.message}
			e.step(m, msg, so)
			m.turn.Unlock()
			out[id] = append(out[id], *so)
		}
	}
	return out
}

// heldMessages lists up to max messages waiting at m, oldest first.
func (m *moduleExec) heldMessages(max int) []*flowMsg {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.queue[:min(len(m.queue), max)])
}

// step runs module m on msg (or reuses its run recorded before a replay),
// routes what it emits and ends the flow run when nothing of it is left;
// so, when not nil, is told what the run took and gave. A panic here
// fails the flow run, never the node.
func (e *flowExec) step(m *moduleExec, msg *flowMsg, so *stepOut) {
	if so == nil {
		so = &stepOut{} // filled and dropped
	}
	fr := msg.fr
	halted := false
	defer func() {
		if !halted {
			m.counted(len(so.errors) > 0)
		}
	}()
	defer e.recoverStep(m, fr, so)
	runID := moduleRunID(fr.rec.ID, m.id, msg.id)
	step := store.FlowStep{Module: m.id, Service: m.service, Run: runID, Message: msg.id, From: msg.fromRun, Queued: time.Since(msg.queued)}
	var rt hopRoute
	run, snap, reused, err := e.runModule(m, msg, runID, &rt, &step)
	if err != nil {
		if errors.Is(err, errHalted) {
			halted = true
			return // the node stops: the flow run runs again at the next start
		}
		e.runFailed(m, msg, step, err, so)
		return
	}
	step.Reused = reused
	var ix map[hopKey]*takenHop
	if run.Outcome == string(sandbox.OK) {
		ix = e.recordHops(msg.fr, m, runID, run.Output, &rt)
	}
	e.settle(m, msg, step, run, snap, ix, so)
}

// hopStep takes the run h that module m made on msg inside its sender's
// worker: it records it and goes on as step does. A panic here fails the
// flow run, never the node.
func (e *flowExec) hopStep(m *moduleExec, msg *flowMsg, h *takenHop, snap map[string]json.RawMessage, ix map[hopKey]*takenHop) {
	fr := msg.fr
	so := &stepOut{}
	defer func() { m.counted(len(so.errors) > 0) }()
	defer e.recoverStep(m, fr, so)
	step := store.FlowStep{Module: m.id, Service: m.service, Run: h.RunID, Message: msg.id, From: msg.fromRun, Queued: h.Gap, InWorker: true}
	if h.err != nil {
		e.runFailed(m, msg, step, h.err, so)
		return
	}
	e.settle(m, msg, step, h.run, snap, ix, so)
}

// recoverStep, deferred by a step, turns a panic in it into the failure
// of its flow run, never the node's end.
func (e *flowExec) recoverStep(m *moduleExec, fr *flowRunState, so *stepOut) {
	if p := recover(); p != nil {
		e.log.Error("panic in a flow step", "module", m.id, "panic", p, "stack", string(debug.Stack()))
		fr.fail(m.id, fmt.Sprintf("module %s: panic in the runner: %v", m.id, p))
		so.errors = append(so.errors, fmt.Sprintf("panic in the runner: %v", p))
		e.done(fr, 1)
	}
}

// runFailed ends step, module m's run for msg that did not run or was not
// recorded (err): the step is kept without a run, and the message goes to
// m's error port or fails the flow run.
func (e *flowExec) runFailed(m *moduleExec, msg *flowMsg, step store.FlowStep, err error, so *stepOut) {
	runID := step.Run
	step.Run, step.Outcome = "", string(sandbox.Error)
	msg.fr.addStep(step)
	so.errors = append(so.errors, err.Error())
	e.failed(m, msg, runID, string(sandbox.Error), err.Error(), so)
	e.done(msg.fr, 1)
}

// settle is the end of module m's run for msg: its write of the flow
// context applied, its step recorded, its emits routed (those that ran
// inside the worker, found in ix, taken at once, in order), and fr ended
// when nothing of it is left.
func (e *flowExec) settle(m *moduleExec, msg *flowMsg, step store.FlowStep, run store.Run, snap map[string]json.RawMessage, ix map[hopKey]*takenHop, so *stepOut) {
	fr := msg.fr
	runID := step.Run
	step.Outcome = run.Outcome
	so.run = run.ID
	if (run.Outcome == string(sandbox.OK) || run.Outcome == string(sandbox.Noop)) && run.Output != nil && !run.Output.FlowContext.Empty() {
		w, err := e.writeContext(runID, snap, run.Output.FlowContext)
		if err != nil {
			step.Outcome = string(sandbox.Error)
			if errors.Is(err, errContextConflict) {
				step.Outcome = "conflict"
			}
			fr.addStep(step)
			so.errors = append(so.errors, err.Error())
			e.failed(m, msg, runID, step.Outcome, err.Error(), so)
			e.done(fr, 1)
			return
		}
		fr.wroteContext(w)
	}
	fr.addStep(step)
	switch {
	case run.Outcome == string(sandbox.OK):
		if run.Output == nil {
			fr.fail(m.id, fmt.Sprintf("module %s: run %s was recorded without its output (truncated): its emits are lost", m.id, run.ID))
			so.errors = append(so.errors, "the run was recorded without its output (truncated)")
			break
		}
		type send struct {
			to  string
			msg *flowMsg
			hop *takenHop // it ran inside the worker
		}
		var sends, local []send
		for i, em := range run.Output.Emit {
			if em.Port == "" {
				continue // to a bus topic: published by the run
			}
			dests := e.wires[flow.End{Module: m.id, Port: em.Port}]
			so.outputs = append(so.outputs, stepEmit{port: em.Port, message: em.Message, to: destModules(dests)})
			if len(dests) == 0 {
				fr.drop(fmt.Sprintf("%s:%s (run %s): no wire from this port", m.id, em.Port, run.ID))
				continue
			}
			for _, d := range dests {
				next := &flowMsg{fr: fr, id: runID + "." + strconv.Itoa(i) + "." + strconv.Itoa(d.index), port: d.to.Port,
					from: m.id, fromRun: runID, message: em.Message, loops: msg.loops, queued: time.Now()}
				if d.loop > 0 {
					next.loops = maps1(msg.loops, d.index)
					if next.loops[d.index] > d.loop {
						fr.fail(m.id, fmt.Sprintf("wire %s → %s: the message went round its loop more than %d times", m.id+":"+em.Port, d.to, d.loop))
						continue
					}
				}
				if h := ix[hopKey{runID, i, d.index}]; h != nil {
					local = append(local, send{d.to.Module, next, h})
					continue
				}
				sends = append(sends, send{d.to.Module, next, nil})
			}
		}
		var size int64
		for _, s := range sends {
			size += int64(len(s.msg.message))
		}
		if e.waiting.Load()+size > maxWaitingBytes {
			fr.fail(m.id, fmt.Sprintf("module %s: its run's emits (%d bytes) would make the messages waiting at the flow's modules pass %d MiB", m.id, size, maxWaitingBytes>>20))
			break
		}
		if !fr.add(len(sends) + len(local)) {
			fr.fail(m.id, fmt.Sprintf("module %s: the flow run passed %d messages", m.id, maxFlowRunMessages))
			break
		}
		for _, s := range sends {
			e.modules[s.to].push(s.msg)
		}
		for _, s := range local {
			e.hopStep(e.modules[s.to], s.msg, s.hop, snap, ix)
		}
	case run.Outcome == string(sandbox.Noop), run.Outcome == string(sandbox.Skipped):
		// The message ends here, as the module decided.
	default:
		so.errors = append(so.errors, fmt.Sprintf("ended %s: %s", run.Outcome, run.Error))
		e.failed(m, msg, runID, run.Outcome, run.Error, so)
	}
	e.done(fr, 1)
}

// destModules are the modules dests lead to.
func destModules(dests []wireDest) []string {
	var out []string
	for _, d := range dests {
		out = append(out, d.to.Module)
	}
	return out
}

// maps1 is loops with one more round through wire i.
func maps1(loops map[int]int, i int) map[int]int {
	out := make(map[int]int, len(loops)+1)
	for k, v := range loops {
		out[k] = v
	}
	out[i]++
	return out
}

// failed sends a message that module m failed on to m's error port when a
// wire leaves it, else fails the flow run naming m.
func (e *flowExec) failed(m *moduleExec, msg *flowMsg, runID, outcome, detail string, so *stepOut) {
	fr := msg.fr
	dests := e.wires[flow.End{Module: m.id, Port: flow.PortError}]
	if len(dests) == 0 {
		fr.fail(m.id, fmt.Sprintf("module %s (service %s) ended %s: %s", m.id, m.service, outcome, detail))
		return
	}
	body, _ := json.Marshal(map[string]any{"error": detail, "outcome": outcome, "module": m.id, "run": runID, "message": msg.message})
	so.outputs = append(so.outputs, stepEmit{port: flow.PortError, message: body, to: destModules(dests)})
	// The error port's wires keep the bounds of any other: a loop back to
	// a module that fails again ends at its bound, and the message (the
	// failed one within it) counts toward the waiting bytes.
	var sends []*flowMsg
	var targets []string
	for _, d := range dests {
		next := &flowMsg{fr: fr, id: runID + ".error." + strconv.Itoa(d.index), port: d.to.Port, from: m.id, fromRun: runID,
			message: body, loops: msg.loops, queued: time.Now()}
		if d.loop > 0 {
			next.loops = maps1(msg.loops, d.index)
			if next.loops[d.index] > d.loop {
				fr.fail(m.id, fmt.Sprintf("wire %s → %s: the message went round its loop more than %d times; module %s (service %s) ended %s: %s", m.id+":"+flow.PortError, d.to, d.loop, m.id, m.service, outcome, detail))
				continue
			}
		}
		sends, targets = append(sends, next), append(targets, d.to.Module)
	}
	if len(sends) == 0 {
		return
	}
	if e.waiting.Load()+int64(len(body)*len(sends)) > maxWaitingBytes {
		fr.fail(m.id, fmt.Sprintf("module %s: its failure's message (%d bytes) would make the messages waiting at the flow's modules pass %d MiB", m.id, len(body), maxWaitingBytes>>20))
		return
	}
	if !fr.add(len(sends)) {
		fr.fail(m.id, fmt.Sprintf("module %s: the flow run passed %d messages", m.id, maxFlowRunMessages))
		return
	}
	for i, s := range sends {
		e.modules[targets[i]].push(s)
	}
}

// errHalted says a module run did not start because the flow halts.
var errHalted = errors.New("the flow is stopping")

// runModule is the run of m for msg and the flow context it read (nil for
// a run reused): the one recorded before when the flow run is a replay
// and there is one, else a new run, waiting for a slot when the service's
// concurrency bound is reached, and, for a module placed on a browser
// runtime, for its page (flowbrowser.go); where it ran goes in step.
func (e *flowExec) runModule(m *moduleExec, msg *flowMsg, runID string, rt *hopRoute, step *store.FlowStep) (store.Run, map[string]json.RawMessage, bool, error) {
	n := e.n
	if msg.fr.replay {
		r, err := e.findRun(m.service, runID)
		if err == nil {
			return r, nil, true, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return store.Run{}, nil, false, fmt.Errorf("module %s: look for the run of a replayed message: %w", m.id, err)
		}
	}
	snap := e.contextSnapshot()
	ev := trigger.Event{Service: m.service, Trigger: "flow " + e.id + "/" + m.id, Kind: trigger.KindFlow, At: time.Now().UTC(),
		Message: msg.message, RunID: runID, Config: m.config, FlowContext: snap,
		Flow: &contract.FlowInfo{Flow: e.id, Version: e.version, Run: msg.fr.rec.ID, Module: m.id, Port: msg.port, Message: msg.id, From: msg.from}}
	again := msg.fr.replay // a replayed message's run may be recorded on another node
	sent := false          // sent to another node, which may have run it
	for {
		select {
		case <-e.halt:
			return store.Run{}, nil, false, errHalted
		default:
		}
		d := n.lookup(m.service)
		if d == nil && n.place != nil && m.browser == nil {
			// In a cluster the module runs where its service is placed;
			// a service being placed again (its node lost) is waited for.
			pl, placed := n.place.get(m.service)
			if !placed {
				return store.Run{}, nil, false, fmt.Errorf("module %s: service %s is placed on no node of the cluster", m.id, m.service)
			}
			if pl.Node == n.cfg.Name {
				sleepCh(e.halt, retryPlaced)
				continue
			}
			r, retry, err := e.runRemote(pl.Node, m, ev, again)
			sent = true
			if retry {
				again = true
				sleepCh(e.halt, retryPlaced)
				continue
			}
			if err != nil {
				return store.Run{}, nil, false, err
			}
			step.Note = "on node " + pl.Node
			return r, snap, false, nil
		}
		if d == nil {
			return store.Run{}, nil, false, fmt.Errorf("module %s: service %s is not deployed on this node", m.id, m.service)
		}
		if sent {
			// Sent to another node before without an answer, the service
			// since moved here: that node may have recorded the run.
			if r, err := e.findRun(m.service, runID); err == nil {
				return r, nil, true, nil
			} else if !errors.Is(err, store.ErrNotFound) {
				sleepCh(e.halt, retryUnavailable)
				continue
			}
			sent = false
		}
		if err := e.sameOwner(m, d); err != nil {
			return store.Run{}, nil, false, err
		}
		if err := n.gate.check(); err != nil {
			sleepCh(e.halt, retryUnavailable)
			continue
		}
		rt.hops, rt.wires = rt.hops[:0], map[int]bool{}
		ctx := n.ctx
		step.Runtime, step.Note = "", ""
		if m.browser != nil {
			var err error
			if ctx, step.Runtime, step.Note, err = e.place(ctx, m, d); err != nil {
				if errors.Is(err, errHalted) {
					return store.Run{}, nil, false, err
				}
				return store.Run{}, nil, false, fmt.Errorf("module %s: %w", m.id, err)
			}
		}
		if step.Runtime == "" {
			ctx = sandbox.WithRoute(ctx, e.routeFor(m, msg.fr, runID, d, rt.wires), &rt.hops)
		}
		r, err := n.invoke(ctx, d, ev)
		if errors.Is(err, errEventBusy) {
			sleepCh(e.halt, 10*time.Millisecond+rand.N(40*time.Millisecond))
			continue
		}
		if errors.Is(err, errPlacementGone) {
			e.log.Info("a module's browser page went away before it answered: the message goes again", "module", m.id, "runtime", m.browser.runtime, "run", runID)
			sleepCh(e.halt, 20*time.Millisecond) // a page that comes and goes is not spun on
			continue
		}
		if err != nil && r.ID == "" {
			if n.stopping.Load() {
				return store.Run{}, nil, false, errHalted // the node stops: the message stays queued
			}
			return store.Run{}, nil, false, fmt.Errorf("module %s: %w", m.id, err)
		}
		if err != nil {
			// The node records it late (unrecorded.go): a store electing
			// a leader refuses writes for seconds. The message waits for
			// its record rather than fail or run twice.
			e.log.Info("a module's run waits for the store to record it", "module", m.id, "run", r.ID, logErr, err)
			rec, werr := e.awaitRecorded(r)
			if werr != nil {
				if errors.Is(werr, errHalted) {
					return store.Run{}, nil, false, werr
				}
				return store.Run{}, nil, false, fmt.Errorf("module %s: run %s ended %s but the store did not record it: %w", m.id, r.ID, r.Outcome, werr)
			}
			return rec, snap, false, nil
		}
		return r, snap, false, nil
	}
}

// sameOwner says whether module m may run d: a submitter's flow runs
// only that submitter's services (as its apply checked), and a flow of
// the operator the services of the owners they had at its first run. A
// name removed and submitted again by someone else does not get the
// flow's messages, nor does it feed the modules after it.
func (e *flowExec) sameOwner(m *moduleExec, d *deployed) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owner == "" {
		m.owner = d.rec.Owner
		if e.owner != "" && e.owner != "operator" {
			m.owner = e.owner
		}
	}
	if d.rec.Owner != m.owner {
		return fmt.Errorf("module %s: service %s is no longer the one this flow runs (it was %s's, it is another owner's now): apply the flow again to use it", m.id, m.service, m.owner)
	}
	return nil
}

// awaitRecorded waits while r, a run the store refused, is held to be
// recorded late, and returns it once the store has it. It fails when the
// node gave it up (more runs held than it keeps) or the flow halts.
func (e *flowExec) awaitRecorded(r store.Run) (store.Run, error) {
	n := e.n
	for n.unrecorded.held(r.ID) {
		select {
		case <-e.halt:
			return store.Run{}, errHalted
		case <-time.After(100 * time.Millisecond):
		}
	}
	rec, err := e.findRun(r.Service, r.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Run{}, fmt.Errorf("the node gave it up after %d runs held unrecorded", maxUnrecorded)
	}
	return rec, err
}

// findRun reads a module's run, asked again while the store answers with
// anything but found or not found (a leader election) for up to 30 s.
func (e *flowExec) findRun(service, id string) (store.Run, error) {
	var err error
	for wait, deadline := retryPlaced, time.Now().Add(30*time.Second); ; wait = min(2*wait, time.Second) {
		var r store.Run
		ctx, cancel := context.WithTimeout(e.n.ctx, 5*time.Second)
		r, err = e.n.store.Run(ctx, service, id)
		cancel()
		if err == nil || errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) {
			return r, err
		}
		select {
		case <-e.halt:
			return store.Run{}, errHalted
		case <-time.After(wait):
		}
	}
}

// retryPlaced is how long a module run waits before it is sent again to
// a service that is busy, moving, or placed here and not deployed yet.
const retryPlaced = 50 * time.Millisecond

// sleepCh waits for d or until ch is closed.
func sleepCh(ch <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ch:
	}
}

// done notes that k of fr's messages were taken and ends fr when none is
// left.
func (e *flowExec) done(fr *flowRunState, k int) {
	fr.mu.Lock()
	fr.pending -= k
	left := fr.pending
	fr.mu.Unlock()
	if left == 0 {
		e.endLater(fr)
	}
}

// endLater ends fr in a goroutine of its own: recording a flow run and
// removing its message from the queue are two writes the module that ran
// last need not wait for before it takes its next message. At most
// flowWindow flow runs are in flight, so at most that many end at once.
func (e *flowExec) endLater(fr *flowRunState) {
	e.ending.Go(func() {
		defer func() {
			if p := recover(); p != nil {
				e.log.Error("panic ending a flow run; its message stays queued and runs again (its module runs reused)", "flow_run", fr.rec.ID, "panic", p, "stack", string(debug.Stack()))
				e.unsettle(fr)
			}
		}()
		e.end(fr)
	})
}

// end records fr and removes its message from the queue. A flow run the
// store did not record stays queued and runs again (its module runs
// reused) at the flow's next start.
func (e *flowExec) end(fr *flowRunState) {
	fr.mu.Lock()
	rec := fr.rec
	rec.Steps = append([]store.FlowStep(nil), fr.rec.Steps...)
	w := fr.ctxWrite
	fr.mu.Unlock()
	if rec.Outcome == "" {
		rec.Outcome = "ok"
	}
	rec.Duration = time.Since(rec.Start)
	// Its writes of the flow context are stored first: a flow run whose
	// write was lost is not recorded, and runs again; one whose write
	// another writer's beat fails.
	err := e.contextStored(w)
	if errors.Is(err, errContextConflict) {
		if rec.Outcome != "failed" {
			rec.Outcome, rec.Module, rec.Error = "failed", "", err.Error()
		}
		err = nil
	}
	if err == nil {
		err = e.putFlowRun(rec)
	}
	if err != nil {
		e.log.Error("flow run not recorded: it stays queued and runs again (its module runs reused)", "flow_run", rec.ID, logErr, err)
		e.unsettle(fr)
	} else {
		e.mu.Lock()
		delete(e.active, rec.ID) // from here a message handed out again begins again, replayed
		q := e.q
		e.mu.Unlock()
		// The delivery to remove is the newest: one handed out again by
		// the queue opened again (reopen) is the one its consumer holds,
		// and the first delivery's consumer is gone. A message not handed
		// out again yet is removed by its sequence: an acknowledgement to
		// a consumer that is gone gets no answer, and the message would
		// run again.
		newest := fr.newest()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		remove := newest.Done
		if !newest.From(q) {
			remove = newest.Remove
		}
		if derr := remove(ctx); derr != nil {
			e.log.Warn("flow run recorded but its message not removed from the queue: it may run again (its module runs reused)", "flow_run", rec.ID, logErr, derr)
			e.unsettle(fr)
		}
		cancel()
		e.n.metrics.observeFlowRun(e.id, rec.Outcome)
		if rec.Outcome == "ok" {
			e.log.Debug("flow run", "flow_run", rec.ID, logOutcome, rec.Outcome, "steps", len(rec.Steps), "duration", rec.Duration)
		} else {
			e.log.Warn("flow run", "flow_run", rec.ID, logOutcome, rec.Outcome, "module", rec.Module, "error", truncate(rec.Error, 512))
		}
	}
	e.mu.Lock()
	delete(e.active, rec.ID) // recorded or not (then it stays queued)
	e.mu.Unlock()
	select {
	case e.idle <- struct{}{}:
	default:
	}
	e.n.flowEnded(rec, err)
}

// unsettledRetry is how long a message whose flow run ended unrecorded
// (or was not removed) waits before the queue hands it out again.
// unsettledWait is that wait while the store is known not to write.
const (
	unsettledRetry = 2 * time.Second
	unsettledWait  = 30 * time.Second
)

// unsettle notes that fr ended but was not recorded, or its message not
// removed: its message, handed out again, is a replay (its module runs
// reused, not run twice), here or at the flow's next start, and the queue
// is asked to hand it out again after unsettledRetry rather than hold a
// place of the window for it.
func (e *flowExec) unsettle(fr *flowRunState) {
	e.mu.Lock()
	e.unsettled = max(e.unsettled, fr.qm.Seq)
	delete(e.active, fr.rec.ID)
	q := e.q
	e.mu.Unlock()
	delay := unsettledRetry
	if e.n.bus.Health() != nil {
		// A store known not to write (a full disk): each try would fail
		// and log again; wait longer between them.
		delay = unsettledWait
	}
	if newest := fr.newest(); newest.From(q) {
		if err := newest.Retry(delay); err != nil {
			e.log.Warn("flow run not settled, and its message not handed back to the queue: it runs again when the queue is opened again", "flow_run", fr.rec.ID, logErr, err)
		}
	}
}

// newest is fr's newest delivery: one handed out again by the queue
// opened again (reopen) is the one its consumer holds.
func (fr *flowRunState) newest() store.QueuedFlowMessage {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if k := len(fr.again); k > 0 {
		return fr.again[k-1]
	}
	return fr.qm
}

// putFlowRun records rec, retrying for up to 30 s: a stream of a cluster
// electing its leader refuses writes for seconds (RAFT's election timeout
// is 4 to 9 s). A store known not to write (a full disk) is not waited
// for.
func (e *flowExec) putFlowRun(rec store.FlowRun) error {
	if f := e.n.flowRunFault.Load(); f != nil {
		if err := (*f)(rec); err != nil {
			return err
		}
	}
	var err error
	for wait, deadline := 50*time.Millisecond, time.Now().Add(30*time.Second); ; wait = min(2*wait, 2*time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = e.n.store.PutFlowRun(ctx, rec)
		cancel()
		if err == nil || e.n.bus.Health() != nil || time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(wait)
	}
}

func (fr *flowRunState) addStep(s store.FlowStep) {
	fr.mu.Lock()
	fr.rec.Steps = append(fr.rec.Steps, s)
	fr.mu.Unlock()
}

// add notes k more messages of the run; false when that passes
// maxFlowRunMessages (none is added).
func (fr *flowRunState) add(k int) bool {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.messages+k > maxFlowRunMessages {
		return false
	}
	fr.messages += k
	fr.pending += k
	return true
}

// fail marks the run failed at module; the first failure is the one told.
func (fr *flowRunState) fail(module, reason string) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.rec.Outcome == "failed" {
		return
	}
	fr.rec.Outcome, fr.rec.Module, fr.rec.Error = "failed", module, reason
}

func (fr *flowRunState) drop(what string) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if len(fr.rec.Dropped) < 64 {
		fr.rec.Dropped = append(fr.rec.Dropped, what)
	}
}

// moduleRunID is the id of module's run for message in flow run: the flow
// run id's time (so the run sorts and is found by time like any run) and
// 48 bits of a hash of the three.
func moduleRunID(flowRun, module, message string) string {
	b, err := runIDEncoding.DecodeString(flowRun)
	if err != nil || len(b) != 12 {
		b = make([]byte, 12)
	}
	return sandbox.ModuleRunID(b[:6], flowRun, module, message)
}

// flowEnded tells the fires waiting for rec.
func (n *Node) flowEnded(rec store.FlowRun, err error) {
	n.flows.mu.Lock()
	ws := n.flows.waiters[rec.ID]
	delete(n.flows.waiters, rec.ID)
	n.flows.mu.Unlock()
	for _, w := range ws {
		w <- flowResult{rec, err}
	}
}

// waitFlowRun registers a wait for flow run id; cancel drops it.
func (n *Node) waitFlowRun(id string) (<-chan flowResult, func()) {
	ch := make(chan flowResult, 1)
	n.flows.mu.Lock()
	if n.flows.waiters == nil {
		n.flows.waiters = map[string][]chan flowResult{}
	}
	n.flows.waiters[id] = append(n.flows.waiters[id], ch)
	n.flows.mu.Unlock()
	return ch, func() {
		n.flows.mu.Lock()
		defer n.flows.mu.Unlock()
		ws := n.flows.waiters[id]
		for i, w := range ws {
			if w == ch {
				n.flows.waiters[id] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(n.flows.waiters[id]) == 0 {
			delete(n.flows.waiters, id)
		}
	}
}
