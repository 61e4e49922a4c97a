package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// ReplaceDriver makes n use d instead of the driver of the same name. Call
// before Start.
func ReplaceDriver(n *Node, d sandbox.Driver) { n.testDrivers = append(n.testDrivers, d) }

// ServiceState reads the state of service from n's store, with the ids of
// the runs that wrote its newest revisions.
func ServiceState(ctx context.Context, n *Node, service string) (store.Snapshot, error) {
	return n.store.State(ctx, service)
}

// ProtocolMessages is how many runtime protocol messages the workers of
// service were sent and sent back; ok is false when its deployment does
// not count them.
func ProtocolMessages(n *Node, service string) (sent, received uint64, ok bool) {
	d := n.lookup(service)
	if d == nil {
		return 0, 0, false
	}
	d.deployMu.Lock()
	dep := d.dep
	d.deployMu.Unlock()
	mc, ok := dep.(sandbox.MessageCounter)
	if !ok {
		return 0, 0, false
	}
	sent, received = mc.Messages()
	return sent, received, true
}

// WriteFlowContext writes flow's stored context behind its running exec,
// as another writer would.
func WriteFlowContext(ctx context.Context, n *Node, flow string, values map[string][]byte) error {
	c, err := n.store.FlowContextOf(ctx, flow)
	if err != nil {
		return err
	}
	for k, v := range values {
		c.Values[k] = v
	}
	_, err = n.store.PutFlowContext(ctx, flow, c)
	return err
}

// Bus is n's bus.
func Bus(n *Node) *bus.Bus { return n.bus }

// PauseHeartbeat stops n's heartbeats without writing it as left, as if it
// were killed or cut off; resume starts them again.
func PauseHeartbeat(n *Node) (resume func()) {
	r := n.reg
	close(r.quit)
	<-r.done
	<-r.looking
	return func() {
		r.quit, r.done, r.looking = make(chan struct{}), make(chan struct{}), make(chan struct{})
		r.start()
	}
}

// StoreTickClaim stores node's claim of tick key with no compare-and-set:
// what a create accepted by a new leader of the claims stream before it
// applied the old leader's looks like.
func StoreTickClaim(ctx context.Context, n *Node, key, node string) (uint64, error) {
	ack, err := n.bus.JS.Publish(ctx, "$KV."+bus.BucketTickClaims+"."+key, []byte(node))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// FirstTickClaim is the node whose claim of tick key was stored first.
func FirstTickClaim(ctx context.Context, n *Node, key string) (string, uint64, error) {
	return n.place.firstClaim(ctx, key)
}

// LeaderFirstClaim is the first claim of tick key as the claims stream's
// leader has it (the slow claim's second read).
func LeaderFirstClaim(ctx context.Context, n *Node, key string) (string, uint64, error) {
	return n.place.leaderFirstClaim(ctx, "$KV."+bus.BucketTickClaims+"."+key)
}

// ClaimTick claims the tick at of service's first trigger for n, as its
// scheduler does, with every create counted as slow when slow is set (its
// first claim then read again from the leader settle later).
func ClaimTick(n *Node, service string, at time.Time, slow bool, settle time.Duration) bool {
	if slow {
		defer func(d, s time.Duration) { slowClaim, slowClaimSettle = d, s }(slowClaim, slowClaimSettle)
		slowClaim, slowClaimSettle = -1, settle
	}
	return n.claimTick(trigger.Event{Service: service, Trigger: trigger.Name(0), Kind: trigger.KindCron, At: at})
}

// PlacementFor is the order in which n would offer m to the nodes of its
// cluster, and why it passes over the others.
func PlacementFor(n *Node, m *manifest.Service) (order []string, passed []string) {
	cands, passed := n.placementFor(m, []string{string(m.Runtime.Driver)})
	for _, c := range cands {
		order = append(order, c.Name)
	}
	return order, passed
}

// FailRecords makes n's store refuse each run f returns an error for, as
// a store electing a leader does; nil ends it.
func FailRecords(n *Node, f func(store.Run) error) {
	if f == nil {
		n.saveFault.Store(nil)
		return
	}
	n.saveFault.Store(&f)
}

// FitsMessage is n.fitsMessage: whether b fits one NATS message of n's.
func FitsMessage(n *Node, b []byte) error { return n.fitsMessage(b, "fire of x", "n2") }

// LoseFlowMessage makes a pull of its own from flow's queue, which waits
// at the store while the window of flow runs in flight is full, calls
// release (which lets the flow runs go on), and drops the message the
// pull gets: the first handed out after the window, lost as one is by a
// pull answered after its reader stopped waiting. It returns the
// message's flow run id.
func LoseFlowMessage(ctx context.Context, n *Node, flow string, release func()) (string, error) {
	js, err := jetstream.New(n.bus.Conn)
	if err != nil {
		return "", err
	}
	c, err := js.Consumer(ctx, bus.StreamFlowQueue, "flow_"+flow)
	if err != nil {
		return "", err
	}
	type got struct {
		run string
		err error
	}
	ch := make(chan got, 1)
	go func() {
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			ch <- got{err: err}
			return
		}
		var m store.FlowMessage
		for msg := range batch.Messages() {
			err = json.Unmarshal(msg.Data(), &m)
		}
		ch <- got{m.Run, errors.Join(err, batch.Error())}
	}()
	time.Sleep(300 * time.Millisecond) // the pull waits at the store first
	release()
	g := <-ch
	return g.run, g.err
}

// FlowWindow is how many flow runs of one flow are in flight at once.
const FlowWindow = flowWindow

// ReopenFlowQueue opens running flow's queue again, as a message lost on
// its way makes the flow do (reopen). Call it only while the flow's
// window of flow runs in flight is full: its take then waits for one to
// end and reads nothing.
func ReopenFlowQueue(n *Node, flow string) bool {
	n.flowsMu.Lock()
	e := n.runningFlow(flow)
	n.flowsMu.Unlock()
	return e != nil && e.reopen()
}

// RecordHops is the node's check and record of the hops a worker answered
// for module's run runID of running flow, in flow run flowRun: out is
// that run's output, wires the route's wires it was sent. It returns the
// run ids of the hops taken and recorded.
func RecordHops(n *Node, flowID, module, flowRun, runID string, out contract.Output, wires []int, hops []sandbox.Hop) (taken []string) {
	n.flowsMu.Lock()
	e := n.runningFlow(flowID)
	n.flowsMu.Unlock()
	fr := &flowRunState{rec: store.FlowRun{ID: flowRun, Flow: flowID, Version: e.version}}
	rt := &hopRoute{wires: map[int]bool{}, hops: hops}
	for _, w := range wires {
		rt.wires[w] = true
	}
	for _, t := range e.recordHops(fr, e.modules[module], runID, &out, rt) {
		if t.err == nil {
			taken = append(taken, t.RunID)
		}
	}
	return taken
}

// NewRunID is a new run id.
func NewRunID() string { return newRunID() }

// ModuleRunID is the run id the node derives for module's run of message
// in flow run flowRun.
func ModuleRunID(flowRun, module, message string) string {
	return moduleRunID(flowRun, module, message)
}

// FailFlowRuns makes n's store refuse each flow run record f returns an
// error for, at once and without retries; nil ends it.
func FailFlowRuns(n *Node, f func(store.FlowRun) error) {
	if f == nil {
		n.flowRunFault.Store(nil)
		return
	}
	n.flowRunFault.Store(&f)
}

// LoseContextWrite makes running flow's context bookkeeping hold a write
// the store refused for a conflict and a later one it stored, as a
// conflict followed by a stored write leaves it, and says what a flow run
// waiting for each is told.
func LoseContextWrite(n *Node, flowID string) (lost, later error) {
	n.flowsMu.Lock()
	e := n.runningFlow(flowID)
	n.flowsMu.Unlock()
	fc := &e.fctx
	fc.mu.Lock()
	from := max(fc.stored, fc.lost)
	fc.applied += 2
	lostW, laterW := fc.applied-1, fc.applied
	fc.drop(from, lostW, fmt.Errorf("flow_context: written meanwhile by another writer (test): %w", errContextConflict))
	fc.stored = laterW
	fc.mu.Unlock()
	return e.contextStored(lostW), e.contextStored(laterW)
}

// HoldFlows keeps n's flow pass from taking flows over while on.
func HoldFlows(n *Node, on bool) { n.holdFlows.Store(on) }

// RunsFlow says whether n runs flow id.
func RunsFlow(n *Node, id string) bool { return n.runningFlow(id) != nil }

// RespondFire and RespondModule answer m as n answers a forwarded fire
// and a module run of another node's flow.
func RespondFire(n *Node, m *nats.Msg, run api.Run) { n.respond(m, fireReply{Run: &run}, "fire of x") }

func RespondModule(n *Node, m *nats.Msg, run store.Run) {
	n.respond(m, moduleReply{Run: &run}, "module run")
}

// PlanExecution writes e into n's ledger as planned work; Execution reads
// one back; ResumeExecutions and AdoptExecutions are what n does at its
// start and when it takes a service over from node from.
func PlanExecution(ctx context.Context, n *Node, e store.Execution) error {
	return n.store.PlanExecutions(ctx, []store.Execution{e})
}

func Execution(ctx context.Context, n *Node, service, run string, seq int) (store.LedgerEntry, error) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// A read may reach a replica that has not the write yet.
		e, err := n.store.Execution(ctx, service, run, seq)
		if !errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) {
			return e, err
		}
	}
}

func ResumeExecutions(ctx context.Context, n *Node) error { return n.exec.resume(ctx) }

func AdoptExecutions(ctx context.Context, n *Node, service, from string) error {
	return n.exec.adopt(ctx, service, from)
}

// ExecutionHook sets n's execution hook: called with each execution at
// "send", "end" (an error is the store refusing its end) and "confirmed".
func ExecutionHook(n *Node, f func(stage string, e store.Execution) error) {
	n.exec.testHook.Store(&f)
}
