package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// Flows in a cluster. A running flow runs on one node of the cluster, its
// node (store.FlowRecord.Node): the node it was started on, or the one
// that took it over. Everything else of a flow is in the replicated store:
// its queue, its runs, its context, its breakpoints. So any node takes a
// flow's messages, and the node that takes a flow over opens its queue
// where the last one left it, reusing the module runs recorded before (a
// flow run replayed), as a node restarted alone does.
//
// A module whose service is placed on another node runs there: the flow's
// node sends the module's event to that node (andromeda.node.<name>.module),
// which runs it as its own run of the service, records it and answers with
// the run; the message crosses nodes persisted in that record and in the
// flow's queue, never only in memory. A flow's lifecycle calls made at a
// node other than the flow's (apply to a running flow, start, stop,
// remove, breakpoints, step, inspect, fire or rerun with a wait) are
// forwarded to the flow's node (andromeda.node.<name>.flow).
//
// The flow's node is written by compare-and-set before the flow starts
// there (a start, a restart's adoption, a takeover), so a node never runs
// a flow on a stale record; a node stops a flow it runs once the stream's
// leader says it is another node's or stopped.

// flowCall is a flow lifecycle call forwarded to the flow's node, made by
// caller (authenticated by the node that took the request), and nodeReply
// the answer to it or to a serviceCall: the result, or the error's kind,
// message and problems.
type flowCall struct {
	Op      string          `json:"op"`
	Caller  string          `json:"caller"`
	Role    string          `json:"role"`
	ID      string          `json:"id"`
	Format  string          `json:"format,omitempty"`
	Doc     []byte          `json:"doc,omitempty"`
	DryRun  bool            `json:"dry_run,omitempty"`
	Module  string          `json:"module,omitempty"`
	On      bool            `json:"on,omitempty"`
	Message json.RawMessage `json:"message,omitempty"`
	WaitMS  int64           `json:"wait_ms,omitempty"`
	Run     string          `json:"run,omitempty"`
	From    string          `json:"from,omitempty"`
	By      string          `json:"by"`
}

type nodeReply struct {
	Result     json.RawMessage `json:"result,omitempty"`
	Kind       string          `json:"kind,omitempty"`
	Error      string          `json:"error,omitempty"`
	Problems   []string        `json:"problems,omitempty"`
	RetryAfter int64           `json:"retry_after_ms,omitempty"`
}

// moduleCall is a flow module's run sent to the node that runs its
// service, and moduleReply its answer. Again says it was sent before
// without an answer: its run may be recorded already.
type moduleCall struct {
	Event trigger.Event `json:"event"`
	Again bool          `json:"again,omitempty"`
	From  string        `json:"from"`
}

type moduleReply struct {
	Run   *store.Run `json:"run,omitempty"`
	Kind  string     `json:"kind,omitempty"`
	Error string     `json:"error,omitempty"`
}

// Kinds of a moduleReply's error besides errorKinds.
const (
	moduleBusy       = "busy"       // the service is at its concurrency: send again
	moduleMoved      = "moved"      // the service is not (or no longer) here
	moduleUnrecorded = "unrecorded" // it ran, and its record was not stored
)

// forwardedKey marks the context of a call forwarded from another node:
// it is answered here, never forwarded again.
type forwardedKey struct{}

func isForwarded(ctx context.Context) bool { return ctx.Value(forwardedKey{}) != nil }

// serveClusterFlows answers the flow calls and module runs the other nodes
// send here, each in a goroutine of its own.
func (n *Node) serveClusterFlows() error {
	for kind, answer := range map[string]func(*nats.Msg){"flow": n.answerFlowCall, "module": n.answerModuleCall} {
		sub, err := n.bus.Conn.Subscribe(bus.NodeSubject(n.cfg.Name, kind), func(m *nats.Msg) { go answer(m) })
		if err != nil {
			return fmt.Errorf("cluster: take %s calls: %w", kind, err)
		}
		n.undo = append(n.undo, sub.Unsubscribe)
	}
	return nil
}

// flowElsewhere is the node other than this one that runs flow r now, when
// it is up: calls about a running flow are answered there.
func (n *Node) flowElsewhere(r store.FlowRecord) (string, bool) {
	if n.place == nil || !r.Running || r.Node == "" || r.Node == n.cfg.Name {
		return "", false
	}
	if c, ok := n.reg.node(r.Node); !ok || c.Health != api.NodeUp {
		return "", false
	}
	return r.Node, true
}

// forwardFlow sends call, made by p, to the node that runs flow call.ID
// when that is another live node, and returns its answer; done is false
// when the call is to be answered here (a node alone, a flow running here
// or nowhere, a call forwarded here, a flow p may not see).
func forwardFlow[T any](ctx context.Context, n *Node, p server.Principal, call flowCall) (out T, done bool, err error) {
	if n.place == nil || isForwarded(ctx) {
		return out, false, nil
	}
	r, err := n.ownedFlow(ctx, p, call.ID)
	if err != nil {
		return out, false, nil // the call here says why
	}
	node, ok := n.flowElsewhere(r)
	if !ok {
		return out, false, nil
	}
	call.Caller, call.Role, call.By = p.Name, p.Role, n.cfg.Name
	out, err = askNode[T](ctx, n, node, "flow", "flow "+call.ID, call)
	return out, true, err
}

// askNode sends call, about what (a flow, a service), to node's kind
// subject and returns its answer (a nodeReply): the result, or the error
// with the kind, message and problems node said.
func askNode[T any](ctx context.Context, n *Node, node, kind, what string, call any) (out T, err error) {
	b, err := json.Marshal(call)
	if err != nil {
		return out, err
	}
	if err := n.fitsMessage(b, kind+" call about "+what, node); err != nil {
		return out, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
	}
	m, err := n.bus.Conn.RequestWithContext(ctx, bus.NodeSubject(node, kind), b)
	if err != nil {
		return out, &server.Error{Kind: server.ErrUnavailable, RetryAfter: retryUnavailable,
			Msg: fmt.Sprintf("%s runs on node %s, which did not answer: %v", what, node, err)}
	}
	var reply nodeReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return out, fmt.Errorf("cluster: node %s answered a %s call with %q: %w", node, kind, m.Data, err)
	}
	if reply.Kind != "" {
		kind, known := errorKinds[reply.Kind]
		switch {
		case !known:
			return out, fmt.Errorf("node %s: %s", node, reply.Error)
		case kind == store.ErrNotFound:
			return out, fmt.Errorf("node %s: %s: %w", node, reply.Error, store.ErrNotFound)
		}
		return out, &server.Error{Kind: kind, Msg: reply.Error, Problems: reply.Problems, RetryAfter: time.Duration(reply.RetryAfter) * time.Millisecond}
	}
	if len(reply.Result) > 0 {
		if err := json.Unmarshal(reply.Result, &out); err != nil {
			return out, fmt.Errorf("cluster: node %s answered a %s call about %s with %q: %w", node, kind, what, reply.Result, err)
		}
	}
	return out, nil
}

// answerCall answers m, a call another node forwarded here, with what
// answer returns, as a nodeReply; a panic in answer is an internal error.
func (n *Node) answerCall(m *nats.Msg, kind string, answer func() (any, error)) {
	var reply nodeReply
	defer func() {
		if p := recover(); p != nil {
			n.log.Error("panic answering a call of another node", "kind", kind, "panic", p, "stack", string(debug.Stack()))
			reply = nodeReply{Kind: "internal", Error: fmt.Sprintf("panic in the runner: %v", p)}
		}
		n.respond(m, reply, kind+" call")
	}()
	res, err := answer()
	if err != nil {
		reply = nodeReply{Kind: errorKind(err), Error: err.Error()}
		var se *server.Error
		if errors.As(err, &se) {
			reply.Problems, reply.RetryAfter = se.Problems, se.RetryAfter.Milliseconds()
		}
		return
	}
	if res != nil {
		if reply.Result, err = json.Marshal(res); err != nil {
			reply = nodeReply{Kind: "internal", Error: err.Error()}
		}
	}
}

// answerFlowCall answers a flow call another node forwarded here, as this
// node's API would for the caller it names.
func (n *Node) answerFlowCall(m *nats.Msg) {
	n.answerCall(m, "flow", func() (any, error) {
		var c flowCall
		if err := json.Unmarshal(m.Data, &c); err != nil || c.Caller == "" || c.ID == "" {
			return nil, server.Errorf(server.ErrInvalid, "cluster: a forwarded flow call that is not JSON or names no caller or flow: %v", err)
		}
		ctx, cancel := context.WithCancel(context.WithValue(n.ctx, forwardedKey{}, c.By))
		defer cancel()
		p := server.Principal{Name: c.Caller, Role: c.Role}
		wait := time.Duration(c.WaitMS) * time.Millisecond
		switch c.Op {
		case "apply":
			return n.ApplyFlow(ctx, p, c.Format, c.Doc, c.DryRun)
		case "start":
			return n.StartFlow(ctx, p, c.ID)
		case "stop":
			return n.StopFlow(ctx, p, c.ID)
		case "rm":
			return nil, n.RemoveFlow(ctx, p, c.ID)
		case "break":
			return n.SetBreakpoint(ctx, p, c.ID, c.Module, c.On)
		case "step":
			return n.StepFlow(ctx, p, c.ID)
		case "get":
			return n.Flow(ctx, p, c.ID)
		case "fire":
			return n.FireFlow(ctx, p, c.ID, c.Message, c.Module, wait)
		case "rerun":
			return n.RerunFlow(ctx, p, c.ID, c.Run, c.From, wait)
		}
		return nil, server.Errorf(server.ErrInvalid, "cluster: a forwarded flow call of unknown op %q", c.Op)
	})
}

// moduleAnswerWait bounds the wait for another node's answer to a module
// run before it is sent again (again: never run twice).
var moduleAnswerWait = time.Minute

// moduleCalls are the module runs sent here in flight, by run id: a run
// sent again while the first is still running waits for it instead of
// running twice.
type moduleCalls struct {
	mu    sync.Mutex
	calls map[string]*moduleCallDone
}

type moduleCallDone struct {
	done  chan struct{}
	reply moduleReply
}

// answerModuleCall runs a flow module's event another node sent here and
// answers with its run, recorded.
func (n *Node) answerModuleCall(m *nats.Msg) {
	var reply moduleReply
	defer func() {
		if p := recover(); p != nil {
			n.log.Error("panic answering a module run of another node's flow", "panic", p, "stack", string(debug.Stack()))
			reply = moduleReply{Kind: "internal", Error: fmt.Sprintf("panic in the runner: %v", p)}
		}
		n.respond(m, reply, "module run")
	}()
	var c moduleCall
	if err := json.Unmarshal(m.Data, &c); err != nil || c.Event.RunID == "" || c.Event.Flow == nil {
		reply = moduleReply{Kind: "invalid", Error: fmt.Sprintf("cluster: a module run that is not JSON or names no run or flow: %v", err)}
		return
	}
	c.Event.Kind = trigger.KindFlow
	n.modCalls.mu.Lock()
	if n.modCalls.calls == nil {
		n.modCalls.calls = map[string]*moduleCallDone{}
	}
	if w := n.modCalls.calls[c.Event.RunID]; w != nil {
		n.modCalls.mu.Unlock()
		select {
		case <-w.done:
			reply = w.reply
		case <-n.ctx.Done():
			reply = moduleReply{Kind: moduleMoved, Error: "node " + n.cfg.Name + " is stopping"}
		}
		return
	}
	w := &moduleCallDone{done: make(chan struct{})}
	n.modCalls.calls[c.Event.RunID] = w
	n.modCalls.mu.Unlock()
	defer func() {
		// Deferred last, run first: a panic of the run is its reply for
		// the callers waiting on it too, not an empty one.
		if p := recover(); p != nil {
			n.log.Error("panic answering a module run of another node's flow", "panic", p, "stack", string(debug.Stack()))
			reply = moduleReply{Kind: "internal", Error: fmt.Sprintf("panic in the runner: %v", p)}
		}
		w.reply = reply
		close(w.done)
		n.modCalls.mu.Lock()
		delete(n.modCalls.calls, c.Event.RunID)
		n.modCalls.mu.Unlock()
	}()
	reply = n.runModuleHere(c)
}

// runModuleHere runs module call c on its service here.
func (n *Node) runModuleHere(c moduleCall) moduleReply {
	ev := c.Event
	d := n.lookup(ev.Service)
	if d == nil {
		return moduleReply{Kind: moduleMoved, Error: fmt.Sprintf("service %s is not running on node %s", ev.Service, n.cfg.Name)}
	}
	if c.Again {
		if r, err := n.store.Run(n.ctx, ev.Service, ev.RunID); err == nil {
			return moduleReply{Run: &r}
		} else if !errors.Is(err, store.ErrNotFound) {
			return moduleReply{Kind: "unavailable", Error: fmt.Sprintf("look for run %s sent again: %v", ev.RunID, err)}
		}
		if n.unrecorded.held(ev.RunID) { // it ran: wait for its record
			return moduleReply{Kind: "unavailable", Error: fmt.Sprintf("run %s waits for the store to record it", ev.RunID)}
		}
	}
	if err := n.gate.check(); err != nil {
		return moduleReply{Kind: "unavailable", Error: err.Error()}
	}
	r, err := n.invoke(n.ctx, d, ev)
	switch {
	case errors.Is(err, errEventBusy):
		return moduleReply{Kind: moduleBusy, Error: err.Error()}
	case err != nil && r.ID == "":
		return moduleReply{Kind: errorKind(err), Error: err.Error()}
	case err != nil:
		return moduleReply{Kind: moduleUnrecorded, Run: &r, Error: err.Error()}
	}
	return moduleReply{Run: &r}
}

// runRemote runs ev, module m's event, on node, the node its service is
// placed on, and returns the run recorded there. retry says to send it
// again (after a wait): the service is busy there or is moving. The call
// is given up, to be sent again, once node is lost or left (a draining
// node still answers: the run it has in flight ends there), and after
// moduleAnswerWait without an answer (a reply lost on its way): sent
// again, the run is answered from its record or waits for the run in
// flight there, never run twice.
func (e *flowExec) runRemote(node string, m *moduleExec, ev trigger.Event, again bool) (run store.Run, retry bool, err error) {
	n := e.n
	b, err := json.Marshal(moduleCall{Event: ev, Again: again, From: n.cfg.Name})
	if err != nil {
		return store.Run{}, false, fmt.Errorf("module %s: encode its run for node %s: %w", m.id, node, err)
	}
	if err := n.fitsMessage(b, "message to module "+m.id, node); err != nil {
		return store.Run{}, false, fmt.Errorf("module %s: %w", m.id, err) // sent again it would never fit
	}
	ctx, cancel := context.WithTimeout(n.ctx, moduleAnswerWait)
	defer cancel()
	watching := make(chan struct{})
	defer close(watching)
	go func() { // a node lost mid-run never answers: the run goes again
		t := time.NewTicker(max(n.reg.hb/2, 50*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-watching:
				return
			case <-e.halt:
				cancel()
				return
			case <-t.C:
				if c, ok := n.reg.node(node); !ok || c.Health == api.NodeLost || c.Health == api.NodeLeft {
					cancel()
					return
				}
			}
		}
	}()
	msg, err := n.bus.Conn.RequestWithContext(ctx, bus.NodeSubject(node, "module"), b)
	if err != nil {
		select {
		case <-e.halt:
			return store.Run{}, false, errHalted
		default:
		}
		e.log.Info("a module's node did not answer its run: it goes again", "module", m.id, "node", node, "run", ev.RunID, logErr, err)
		return store.Run{}, true, nil
	}
	var reply moduleReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return store.Run{}, false, fmt.Errorf("module %s: node %s answered its run with %q: %w", m.id, node, msg.Data, err)
	}
	switch reply.Kind {
	case "":
		if reply.Run == nil {
			return store.Run{}, false, fmt.Errorf("module %s: node %s answered without the run", m.id, node)
		}
		return *reply.Run, false, nil
	case moduleBusy, moduleMoved, "unavailable":
		return store.Run{}, true, nil
	case moduleUnrecorded:
		// It ran; that node records it late. Sent again, it answers with
		// the record once stored (never runs it twice while it holds it).
		e.log.Info("a module's run on another node waits for the store to record it", "module", m.id, "node", node, "run", ev.RunID, logErr, reply.Error)
		return store.Run{}, true, nil
	}
	return store.Run{}, false, fmt.Errorf("module %s: on node %s: %s", m.id, node, reply.Error)
}

// flowPass keeps the flows of the cluster each on one node, run at every
// heartbeat: a flow this node runs that the store says is another node's
// or stopped is stopped here; a running flow placed here and not running
// (a restart, a start that failed) is started; a running flow whose node
// is lost or left, or that no node holds, is taken over in turn (the live
// nodes in an order of the flow's own, one heartbeat apart), by
// compare-and-set, by a node that stores its own heartbeat (fresh). A
// draining node stops its flows, letting each run in flight end, and
// gives them up for the others to take.
func (n *Node) flowPass(ctx context.Context) {
	r := n.reg
	recs, err := n.store.Flows(ctx)
	if err != nil {
		n.log.Debug("cluster: flows not listed this heartbeat", logErr, err)
		return
	}
	nodes := r.claimView()
	fresh := r.fresh()
	draining := r.draining.Load() != 0
	me := n.cfg.Name
	seen := map[string]bool{}
	for _, rec := range recs {
		seen[rec.ID] = true
		here := n.runningFlow(rec.ID) != nil
		switch {
		case here && (!rec.Running || rec.Node != me):
			// Confirmed at the leader: a replica's record may be behind.
			lr, err := n.store.FlowAtLeader(ctx, rec.ID)
			if err == nil && lr.Running && lr.Node == me {
				continue
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				continue
			}
			n.flowsMu.Lock()
			n.stopFlow(rec.ID, false)
			n.flowsMu.Unlock()
			n.log.Warn("cluster: flow stopped here: it runs on another node now, or was stopped", "flow", rec.ID, "node", lr.Node, "running", lr.Running)
		case draining && rec.Running && rec.Node == me:
			n.flowsMu.Lock()
			if here {
				n.stopFlow(rec.ID, true)
			}
			rec.Node = ""
			_, err := n.store.PutFlow(ctx, rec, rec.Revision)
			n.flowsMu.Unlock()
			if err != nil {
				n.log.Warn("cluster: flow stopped for the drain, not given up yet; next heartbeat", "flow", rec.ID, logErr, err)
				continue
			}
			n.log.Info("cluster: flow given up for the drain", "flow", rec.ID)
		case here, !rec.Running, draining:
		case rec.Node == me:
			n.claimFlow(ctx, rec, "placed here")
		default:
			c, known := nodes[rec.Node]
			if known && (c.Health == api.NodeUp || c.Health == api.NodeDraining) {
				n.flowTurns.forget(rec.ID) // a draining node gives its flows up itself
				continue
			}
			if !fresh || n.holdFlows.Load() {
				// Cut off from the others, this node judges them lost by
				// its own silence: it takes nothing over (as the services'
				// failover), or it would take a flow from a node alive the
				// moment the partition heals and the store writes again.
				continue
			}
			since := n.flowTurns.since(rec.ID)
			if known && rec.Node != "" {
				since = goneSince(c, r.lost)
			}
			var cands []string
			for name, c := range nodes {
				if c.Health == api.NodeUp {
					cands = append(cands, name)
				}
			}
			slices.SortFunc(cands, func(a, b string) int {
				return int(turnHash(a, "flow:"+rec.ID)) - int(turnHash(b, "flow:"+rec.ID))
			})
			turn := slices.Index(cands, me)
			if turn < 0 || time.Since(since) < time.Duration(turn)*r.hb {
				continue
			}
			from := rec.Node
			if n.claimFlow(ctx, rec, "taken over") {
				n.log.Warn("cluster: flow taken over", "flow", rec.ID, "from", from, "health", c.Health)
			}
		}
	}
	n.flowTurns.keep(seen)
}

// claimFlow writes this node as rec's node, over the revision read, and
// starts the flow here; false when another node's write came first or
// the start failed (logged, tried again at the next heartbeat).
func (n *Node) claimFlow(ctx context.Context, rec store.FlowRecord, why string) bool {
	n.flowsMu.Lock()
	defer n.flowsMu.Unlock()
	if n.runningFlow(rec.ID) != nil {
		return false
	}
	rec.Node = n.cfg.Name
	rev, err := n.store.PutFlow(ctx, rec, rec.Revision)
	if err != nil {
		if !errors.Is(err, store.ErrConflict) {
			n.log.Warn("cluster: flow not claimed; next heartbeat", "flow", rec.ID, "why", why, logErr, err)
		}
		return false
	}
	rec.Revision = rev
	if err := n.startFlow(ctx, rec); err != nil {
		if n.flowTurns.failed(rec.ID, err.Error()) {
			n.log.Error("cluster: flow placed here not started; tried again each heartbeat", "flow", rec.ID, "why", why, logErr, err)
		}
		return false
	}
	n.flowTurns.failed(rec.ID, "")
	return true
}

// goneSince is since when node c is gone as judged by a node taking its
// work over: its left or draining entry, or lost_after past its last
// heartbeat.
func goneSince(c api.ClusterNode, lost time.Duration) time.Time {
	switch since := c.Beat; {
	case c.Health == api.NodeLost:
		return since.Add(lost)
	case c.Health == api.NodeDraining && c.DrainingSince != nil:
		return *c.DrainingSince
	default:
		return since
	}
}

// flowTurns remembers, per flow, since when this node has seen it held by
// no node it knows (its turn counts from then) and the last error its
// start met (logged once).
type flowTurns struct {
	mu     sync.Mutex
	first  map[string]time.Time
	errors map[string]string
}

func (t *flowTurns) since(id string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.first == nil {
		t.first = map[string]time.Time{}
	}
	if at, ok := t.first[id]; ok {
		return at
	}
	t.first[id] = time.Now()
	return t.first[id]
}

func (t *flowTurns) forget(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.first, id)
}

// failed notes msg as flow id's last start error ("" for none) and says
// whether it is new.
func (t *flowTurns) failed(id, msg string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.errors == nil {
		t.errors = map[string]string{}
	}
	if t.errors[id] == msg {
		return false
	}
	if msg == "" {
		delete(t.errors, id)
	} else {
		t.errors[id] = msg
	}
	return true
}

// keep forgets the flows not in ids (removed).
func (t *flowTurns) keep(ids map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.first {
		if !ids[id] {
			delete(t.first, id)
		}
	}
	for id := range t.errors {
		if !ids[id] {
			delete(t.errors, id)
		}
	}
}

// clusterFlowHooks caches, for a second, the webhook paths of the flows
// other nodes of the cluster run.
type clusterFlowHooks struct {
	mu    sync.Mutex
	at    time.Time
	paths map[string]server.HookRoute
}

// clusterFlowHookRoute is the route of the http trigger at path of a flow
// running on another node of the cluster: the request is authenticated
// here and its message queued here, in the flow's queue, which the flow's
// node reads.
func (n *Node) clusterFlowHookRoute(path string) (server.HookRoute, bool) {
	if n.place == nil {
		return server.HookRoute{}, false
	}
	h := &n.flowHooksSeen
	h.mu.Lock()
	if time.Since(h.at) > time.Second {
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		recs, err := n.store.Flows(ctx)
		cancel()
		if err != nil {
			h.mu.Unlock()
			n.log.Warn("cluster: webhook routes of the other nodes' flows not read", logErr, err)
			return server.HookRoute{}, false
		}
		h.paths, h.at = map[string]server.HookRoute{}, time.Now()
		for _, rec := range recs {
			if !rec.Running || rec.Node == n.cfg.Name {
				continue
			}
			fl, err := decodeFlow(rec)
			if err != nil {
				continue
			}
			for i, t := range flowTriggerSpecs(&fl).all {
				if t.Kind == manifest.KindHTTP {
					h.paths[t.Path] = server.HookRoute{Flow: rec.ID, Trigger: trigger.Name(i), Path: t.Path, Methods: t.Methods, Auth: t.Auth}
				}
			}
		}
	}
	r, ok := h.paths[path]
	h.mu.Unlock()
	if ok {
		if secret := r.Auth.Secret(); secret != "" {
			if v, found := n.secrets.value(secret); found {
				r.Secret = v
			}
		}
	}
	return r, ok
}

// flowHookElsewhere queues a webhook request for flow id running on
// another node of the cluster: where trigger i sends it, as that node
// would.
func (n *Node) flowHookElsewhere(ctx context.Context, route server.HookRoute, i int, method string, message json.RawMessage) (api.FlowRun, error) {
	r, err := n.store.Flow(ctx, route.Flow)
	if err != nil {
		return api.FlowRun{}, err
	}
	fl, err := decodeFlow(r)
	if err != nil {
		return api.FlowRun{}, err
	}
	trig := flowTriggerSpecs(&fl)
	if !r.Running || i < 0 || i >= len(trig.all) || trig.all[i].Kind != manifest.KindHTTP || trig.all[i].Path != route.Path {
		return api.FlowRun{}, server.Errorf(server.ErrConflict, "flow %s is stopped, or no longer serves %s", route.Flow, route.Path)
	}
	m := store.FlowMessage{Run: newRunID(), Module: trig.modules[i], Message: message, At: time.Now().UTC(),
		By: fmt.Sprintf("%s (%s %s)", route.Trigger, method, route.Path)}
	return n.enqueueFlow(ctx, route.Flow, r.Version, m, 0)
}
