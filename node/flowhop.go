package node

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Same-worker hops (runtime protocol 2). A module's message to a module of
// the same service (so of the same deployment) goes on inside the worker
// that ran it: the node sends the worker the route with the invocation
// (which modules each port leads to, with their configs), the worker runs
// them on the emits in its own data form and answers with every run's
// output, and the node records each as a run of its own and routes the
// emits that leave the worker. The wasm driver does the same in its
// instance pool (sandbox.WalkRoute): a hop is a call of the next module
// on an instance of the pool, its input built from the sender's. The
// node keeps its rules for such a run:
// the same run id as through the node, actions judged, bus emits
// published, the flow context compare-and-swapped, one flow step each.
//
// A route goes only where nothing but the worker's answer is needed: a
// service without state (a state write is judged on fresh state by the
// node), a wire that is no loop, a module not held at a breakpoint. A
// worker that does not speak protocol 2 (or a driver that does not pass
// routes) answers without hops, and the node routes as before. A hop the
// node cannot take (a run id other than the node's) is dropped and its
// message goes through the node.

// routeDest and routeDoc are a same-worker route as the runtime
// protocol spells it (sandbox.Route).
type (
	routeDest = sandbox.RouteDest
	routeDoc  = sandbox.Route
)

// maxRouteDepth bounds how many modules deep a route goes.
const maxRouteDepth = 32

// routeFor is the JSON of the same-worker route of m's run for fr, or nil
// when no wire of m leads to a module its worker hosts.
func (e *flowExec) routeFor(m *moduleExec, fr *flowRunState, runID string, d *deployed) []byte {
	switch {
	case d.manifest.Capabilities.State,
		d.rec.Decision.Driver != "process" && d.rec.Decision.Driver != "docker" && d.rec.Decision.Driver != "wasm":
		return nil
	}
	var base map[string]any
	if lc := d.live.Load(); lc != nil {
		base = lc.config
	} else {
		base = d.manifest.Config
	}
	to := e.routeTree(m, fr.rec.ID, runID, base, 0)
	if len(to) == 0 {
		return nil
	}
	fr.mu.Lock()
	left := maxFlowRunMessages - fr.messages
	fr.mu.Unlock()
	if left <= 0 {
		return nil
	}
	b, err := runIDEncoding.DecodeString(fr.rec.ID)
	if err != nil || len(b) != 12 {
		b = make([]byte, 12)
	}
	doc, err := json.Marshal(routeDoc{FlowRun: fr.rec.ID, RunTime: hex.EncodeToString(b[:6]), Max: left, To: to})
	if err != nil {
		return nil // a config JSON cannot encode: the node routes
	}
	return doc
}

// routeTree is, by port, the modules m's wires lead to in the same
// service, and theirs, depth levels down; runID is m's run for the first
// emits of the senders before it.
func (e *flowExec) routeTree(m *moduleExec, flowRun, runID string, base map[string]any, depth int) map[string][]routeDest {
	if depth >= maxRouteDepth {
		return nil
	}
	var to map[string][]routeDest
	for from, dests := range e.wires {
		if from.Module != m.id {
			continue
		}
		for _, w := range dests {
			dm := e.modules[w.to.Module]
			if w.loop > 0 || dm == nil || dm.service != m.service || dm.browser != nil || dm.isHeld() || !dm.idle() {
				continue
			}
			if to == nil {
				to = map[string][]routeDest{}
			}
			id0 := moduleRunID(flowRun, dm.id, runID+".0."+strconv.Itoa(w.index))
			to[from.Port] = append(to[from.Port], routeDest{Wire: w.index, Module: dm.id, Port: w.to.Port,
				Name: "flow " + e.id + "/" + dm.id, Config: overlay(base, dm.config), ID0: id0, To: e.routeTree(dm, flowRun, id0, base, depth+1)})
		}
	}
	return to
}

// idle says m has no message waiting and none running: a message sent
// to it inside a worker cannot overtake one sent through the node on the
// same wire (its sender runs one message at a time, so nothing else is
// sent to m on that wire meanwhile).
func (m *moduleExec) idle() bool {
	if !m.turn.TryLock() {
		return false
	}
	defer m.turn.Unlock()
	return m.depth() == 0
}

func (m *moduleExec) isHeld() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held
}

// hopKey finds a hop by the run whose emit it ran on, the emit and the
// wire.
type hopKey struct {
	from       string
	emit, wire int
}

// takenHop is a hop the node took: its run recorded (or the store's
// error).
type takenHop struct {
	*sandbox.Hop
	run store.Run
	err error
}

// recordHops checks the hops m's run runID made inside its worker and
// records the runs of those that hold, all at once, by hopKey. A hop
// holds when it went along a wire of the flow from the module of the run
// it names to the module it names, and its run id is the one the node
// derives; one that does not is dropped, and its message goes through the
// node. A hop taken is recorded whatever happens to its flow run after:
// it ran.
func (e *flowExec) recordHops(fr *flowRunState, m *moduleExec, runID string, hops []sandbox.Hop) map[hopKey]*takenHop {
	if len(hops) == 0 {
		return nil
	}
	senders := map[string]string{runID: m.id} // run id → module
	ix := map[hopKey]*takenHop{}
	var msgs []*flowMsg
	var taken []*takenHop
	for i := range hops {
		h := &hops[i]
		from, ok := senders[h.From]
		if !ok || h.Wire >= len(e.byIndex) || e.byIndex[h.Wire].Module != from {
			continue
		}
		var to *wireDest
		for j, d := range e.wires[e.byIndex[h.Wire]] {
			if d.index == h.Wire {
				to = &e.wires[e.byIndex[h.Wire]][j]
			}
		}
		msgID := h.From + "." + strconv.Itoa(h.Emit) + "." + strconv.Itoa(h.Wire)
		if to == nil || to.loop > 0 || to.to.Module != h.Module || e.modules[h.Module] == nil || h.RunID != moduleRunID(fr.rec.ID, h.Module, msgID) {
			continue
		}
		if _, dup := ix[hopKey{h.From, h.Emit, h.Wire}]; dup {
			continue
		}
		senders[h.RunID] = h.Module
		t := &takenHop{Hop: h}
		ix[hopKey{h.From, h.Emit, h.Wire}] = t
		taken = append(taken, t)
		msgs = append(msgs, &flowMsg{fr: fr, id: msgID, port: to.to.Port, from: from, fromRun: h.From})
	}
	var wg sync.WaitGroup
	for i, t := range taken {
		wg.Go(func() { t.run, t.err = e.recordHop(e.modules[t.Module], msgs[i], t.Hop) })
	}
	wg.Wait()
	return ix
}

// recordHop records hop h, module m's run for msg inside the worker, as a
// run of its service, the way invoke records a run: actions judged, bus
// emits published, health, metrics and the store. The error is the
// store's: the run is not recorded.
func (e *flowExec) recordHop(m *moduleExec, msg *flowMsg, h *sandbox.Hop) (store.Run, error) {
	n := e.n
	d := n.lookup(m.service)
	if d == nil {
		return store.Run{}, fmt.Errorf("module %s: service %s is not deployed on this node", m.id, m.service)
	}
	if phase, ok := d.life.enter(); !ok {
		return store.Run{}, notStarted(d.rec.Name, phase)
	}
	defer d.life.leave()
	n.runs.Add(1)
	defer n.runs.Done()
	now := time.Now().UTC()
	run := store.Run{
		ID: h.RunID, Service: d.rec.Name, Version: d.rec.Version, Owner: d.rec.Owner,
		Trigger: contract.Trigger{Kind: trigger.KindFlow, Name: "flow " + e.id + "/" + m.id, At: now.Format(time.RFC3339Nano),
			Flow: &contract.FlowInfo{Flow: e.id, Version: e.version, Run: msg.fr.rec.ID, Module: m.id, Port: msg.port, Message: msg.id, From: msg.from}},
		Start:  now.Add(-h.Exit.Usage.Wall),
		Digest: d.rec.Digest,
		Driver: d.rec.Decision.Driver,
	}
	log := n.log.With(logService, d.rec.Name, logRun, run.ID, logTrigger, run.Trigger.Name)
	res := sandbox.Judge(h.Exit)
	res.Usage.MemoryScope = ""
	if (res.Outcome == sandbox.OK || res.Outcome == sandbox.Noop) && !res.Output.State.Empty() {
		res.Outcome, res.Error = sandbox.Error, "state: the service changed state but its manifest does not grant capabilities.state"
	}
	// Actions judged last, as invoke does: their budget goes back when
	// the run does not end ok or is not recorded.
	taken := d.judgeActions(&res, n.executorFor)
	if res.Outcome == sandbox.OK {
		run.Emitted = n.publishEmits(n.ctx, d, res.Output.Emit)
	}
	run, err := n.finish(log, d, run, res.Outcome, res.Error, &res, false)
	if taken != nil && (res.Outcome != sandbox.OK || err != nil) {
		d.rates.giveBack(*taken)
	}
	return run, err
}
