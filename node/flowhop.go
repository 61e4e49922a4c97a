package node

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/flow"
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
// when no wire of m leads to a module its worker hosts; the indices of
// the route's wires go in wires.
func (e *flowExec) routeFor(m *moduleExec, fr *flowRunState, runID string, d *deployed, wires map[int]bool) []byte {
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
	to := e.routeTree(m, fr.rec.ID, runID, base, 0, wires)
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
// emits of the senders before it. The indices of its wires go in wires.
func (e *flowExec) routeTree(m *moduleExec, flowRun, runID string, base map[string]any, depth int, wires map[int]bool) map[string][]routeDest {
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
			wires[w.index] = true
			to[from.Port] = append(to[from.Port], routeDest{Wire: w.index, Module: dm.id, Port: w.to.Port,
				Name: "flow " + e.id + "/" + dm.id, Config: overlay(base, dm.config), ID0: id0, To: e.routeTree(dm, flowRun, id0, base, depth+1, wires)})
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
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue) == 0 && !m.busy // busy: taken, its step not begun
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

// takenHop is a hop the node took: its exit judged, its run recorded (or
// the store's error).
type takenHop struct {
	*sandbox.Hop
	res sandbox.Result
	run store.Run
	err error
}

// hopRoute is the same-worker route a module run was sent (the indices of
// its wires) and the hops its worker answered with.
type hopRoute struct {
	wires map[int]bool
	hops  []sandbox.Hop
}

// recordHops checks the hops m's run made inside its worker and records
// the runs of those that hold, all at once, by hopKey. The node walks the
// route itself, as settle will: from the emits of m's run (out), along
// the wires of the route it sent (wires), to each hop that names the
// emit, the wire, the module the wire leads to and the run id the node
// derives, and on from that hop's own emits. A hop off that walk is
// dropped and never recorded: a worker answers for the modules it was
// sent, on the emits they made, never for a module of another service or
// a run nobody made; what a dropped hop carried goes through the node.
// The hops taken are bounded by what is left of the flow run's messages.
// A hop taken is recorded whatever happens to its flow run after: it
// ran.
func (e *flowExec) recordHops(fr *flowRunState, m *moduleExec, runID string, out *contract.Output, rt *hopRoute) map[hopKey]*takenHop {
	if len(rt.hops) == 0 || out == nil {
		return nil
	}
	byKey := map[hopKey]*sandbox.Hop{}
	for i := range rt.hops {
		h := &rt.hops[i]
		if k := (hopKey{h.From, h.Emit, h.Wire}); byKey[k] == nil {
			byKey[k] = h
		}
	}
	fr.mu.Lock()
	left := maxFlowRunMessages - fr.messages
	fr.mu.Unlock()
	type sender struct {
		m     *moduleExec
		run   string
		emits []contract.Emit
	}
	ix := map[hopKey]*takenHop{}
	var msgs []*flowMsg
	var taken []*takenHop
	for walk := []sender{{m, runID, out.Emit}}; len(walk) > 0 && left > 0; walk = walk[1:] {
		s := walk[0]
		for i, em := range s.emits {
			if em.Port == "" {
				continue
			}
			for _, d := range e.wires[flow.End{Module: s.m.id, Port: em.Port}] {
				k := hopKey{s.run, i, d.index}
				h := byKey[k]
				dm := e.modules[d.to.Module]
				if h == nil || !rt.wires[d.index] || dm == nil || dm.service != m.service || h.Module != dm.id || left == 0 {
					continue
				}
				msgID := s.run + "." + strconv.Itoa(i) + "." + strconv.Itoa(d.index)
				if h.RunID != moduleRunID(fr.rec.ID, dm.id, msgID) {
					continue
				}
				delete(byKey, k)
				left--
				t := &takenHop{Hop: h, res: sandbox.Judge(h.Exit)}
				ix[k] = t
				taken = append(taken, t)
				msgs = append(msgs, &flowMsg{fr: fr, id: msgID, port: d.to.Port, from: s.m.id, fromRun: s.run})
				if t.res.Outcome == sandbox.OK {
					walk = append(walk, sender{dm, h.RunID, t.res.Output.Emit})
				}
			}
		}
	}
	var wg sync.WaitGroup
	for i, t := range taken {
		wg.Go(func() {
			// The hop's output is the guest's: a panic judging or
			// recording it fails the hop, never the node.
			defer func() {
				if p := recover(); p != nil {
					e.log.Error("panic recording a same-worker hop", "module", t.Module, "run", t.RunID, "panic", p, "stack", string(debug.Stack()))
					t.run, t.err = store.Run{}, fmt.Errorf("module %s: panic in the runner recording run %s: %v", t.Module, t.RunID, p)
				}
			}()
			t.run, t.err = e.recordHop(e.modules[t.Module], msgs[i], t.Hop, t.res)
		})
	}
	wg.Wait()
	return ix
}

// recordHop records hop h, module m's run for msg inside the worker, as a
// run of its service, the way invoke records a run: actions judged, bus
// emits published, health, metrics and the store. The error is the
// store's: the run is not recorded.
func (e *flowExec) recordHop(m *moduleExec, msg *flowMsg, h *sandbox.Hop, res sandbox.Result) (store.Run, error) {
	n := e.n
	d := n.lookup(m.service)
	if d == nil {
		return store.Run{}, fmt.Errorf("module %s: service %s is not deployed on this node", m.id, m.service)
	}
	if err := e.sameOwner(m, d); err != nil {
		return store.Run{}, err
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
