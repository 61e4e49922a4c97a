package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
)

// Route is a same-worker route as the node hands it with an invocation
// (docs/runtime-protocol.md, "route"): by output port, the modules the
// same worker hosts that the invoked module's emits go to.
type Route struct {
	FlowRun string `json:"flow_run"`
	// RunTime is the flow run id's first 6 bytes, in hex: the time part
	// of every module run id derived from it.
	RunTime string `json:"run_time"`
	// Max bounds the hops the worker makes.
	Max int                    `json:"max"`
	To  map[string][]RouteDest `json:"to"`
}

// RouteDest is where a routed emit goes: a module, along a wire, and on
// from there.
type RouteDest struct {
	Wire   int            `json:"wire"`
	Module string         `json:"module"`
	Port   string         `json:"port"`
	Name   string         `json:"name"` // the run's trigger name
	Config map[string]any `json:"config"`
	// ID0 is the module's run id when the message is its sender's first
	// emit (index 0) and every sender before it on the route took its
	// sender's first emit too, derived by the node so the worker need
	// not hash.
	ID0 string                 `json:"id0"`
	To  map[string][]RouteDest `json:"to,omitempty"`
}

// RunIDEncoding is the base32 alphabet of run ids.
var RunIDEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// ModuleRunID is the id of module's run for message of flow run flowRun:
// the flow run id's 6 bytes of time (runTime) and the first 6 bytes of
// sha256(flowRun, module, message), so a replayed flow run finds the
// runs it made before.
func ModuleRunID(runTime []byte, flowRun, module, message string) string {
	b := make([]byte, 12)
	copy(b, runTime)
	sum := sha256.Sum256([]byte(flowRun + "\x00" + module + "\x00" + message))
	copy(b[6:], sum[:6])
	return RunIDEncoding.EncodeToString(b)
}

// WalkRoute makes the hops of an invocation's same-worker route in a
// driver that runs its modules in its own process (the wasm driver's
// instance pool), as the language shims do in their workers: for each
// emit of output on a port the route names, in emit order, each module
// it leads to runs (call: one invocation of the same deployment) on the
// emitted message, and what it emits goes on along its own route, up to
// the route's Max hops. input is the invocation's (the contract's Input);
// each hop's is that input with the hop's run id, message, config and
// place in the flow. A call that fails (the runner, or ctx ended) ends
// the walk, and so do Max hops and MaxWalkBytes held: the node routes
// what was not walked itself.
func WalkRoute(ctx context.Context, routeJSON, input, output []byte, call func(context.Context, []byte) (Exit, error)) []Hop {
	var r Route
	var in contract.Input
	if json.Unmarshal(routeJSON, &r) != nil || len(r.To) == 0 || json.Unmarshal(input, &in) != nil || in.Trigger.Flow == nil {
		return nil
	}
	runTime, err := hex.DecodeString(r.RunTime)
	if err != nil || len(runTime) != 6 {
		runTime = make([]byte, 6)
	}
	w := walker{ctx: ctx, route: r, runTime: runTime, call: call, hopsLeft: r.Max}
	w.walk(in, output, r.To, time.Now(), true)
	return w.hops
}

// MaxWalkBytes bounds the bytes a route walk holds: the output of every
// hop it made (returned all at once when the invocation ends) and the
// emits it is walking (decoded copies of their outputs). Once it holds
// as much, the walk makes no more hops and the node routes the rest, as
// when Max hops are made; without it 10,000 hops of 4 MiB outputs could
// hold GiBs. 16 MiB is twice the 8 MiB answer line that bounds the
// process driver's hops and a quarter of the node's 64 MiB bound on a
// flow's waiting messages, as several walks may run at once. A hop's
// size is known only once it ran, and a hop that ran is kept (dropping
// it would run it twice), so a walk may pass the bound by one output
// and its decoded copy.
const MaxWalkBytes = 16 << 20

type walker struct {
	ctx      context.Context
	route    Route
	runTime  []byte
	call     func(context.Context, []byte) (Exit, error)
	hopsLeft int
	held     int // bytes held, against MaxWalkBytes
	hops     []Hop
	stopped  bool
}

// walk makes the hops of output, module run in's, along to. sentAt is
// when the sender returned; first says every sender so far took its own
// sender's first emit (a destination's ID0 is then its run id).
func (w *walker) walk(in contract.Input, output []byte, to map[string][]RouteDest, sentAt time.Time, first bool) {
	var out struct {
		Emit []struct {
			Port    string          `json:"port"`
			Message json.RawMessage `json:"message"`
		} `json:"emit"`
	}
	if json.Unmarshal(output, &out) != nil {
		return
	}
	// out holds a copy of the emits while they are walked: at most
	// output's size. A hop's input is not kept past its call.
	w.held += len(output)
	defer func() { w.held -= len(output) }()
	for i, em := range out.Emit {
		for _, d := range to[em.Port] {
			// Once stopped, stopped for good: the hops are the walk's
			// first ones, and the node routes every emit after them.
			if w.stopped || w.hopsLeft <= 0 || w.held >= MaxWalkBytes || w.ctx.Err() != nil {
				w.stopped = true
				return
			}
			w.hopsLeft--
			msgID := in.RunID + "." + strconv.Itoa(i) + "." + strconv.Itoa(d.Wire)
			runID := d.ID0
			if !first || i != 0 || runID == "" {
				runID = ModuleRunID(w.runTime, w.route.FlowRun, d.Module, msgID)
			}
			hin := in
			hin.RunID, hin.Message, hin.Config = runID, em.Message, d.Config
			if hin.Config == nil {
				hin.Config = map[string]any{}
			}
			fl := *in.Trigger.Flow
			fl.From, fl.Module, fl.Port, fl.Message = in.Trigger.Flow.Module, d.Module, d.Port, msgID
			hin.Trigger.Name, hin.Trigger.Flow = d.Name, &fl
			b, err := json.Marshal(hin)
			if err != nil {
				w.stopped = true
				return
			}
			start := time.Now()
			exit, err := w.call(w.ctx, b)
			if err != nil {
				w.stopped = true // not a hop: the node routes this emit and the rest
				return
			}
			end := time.Now()
			w.hops = append(w.hops, Hop{RunID: runID, Module: d.Module, From: in.RunID, Emit: i, Wire: d.Wire, Exit: exit, Gap: start.Sub(sentAt)})
			w.held += len(exit.Output) + len(exit.Detail)
			if exit.Outcome == OK && len(d.To) > 0 {
				w.walk(hin, exit.Output, d.To, end, first && i == 0)
			}
		}
	}
}
