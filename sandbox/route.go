package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// A flow's same-worker hops (runtime protocol 2). When a flow module's
// message goes on, through a wire, to another module the same worker
// hosts, the node hands the worker the route with the invocation: the
// worker runs the module, then, for each emit on a routed port, the
// modules the route names, in the runtime's own data form and without a
// round trip through the node, and answers with every hop's output beside
// the module's own. A driver whose workers speak protocol 2 passes the
// route on (WithRoute) and fills the hops in; any other driver ignores it,
// and the node routes the emits itself.

// MessageCounter is a deployment whose workers speak the runtime
// protocol: how many messages it sent them and read from them, so far.
type MessageCounter interface {
	Messages() (sent, received uint64)
}

// Hop is one module run a worker made on a same-worker route.
type Hop struct {
	// RunID is the run's id, derived by the worker as the node does; the
	// node checks it.
	RunID string
	// Module is the flow module that ran; From the run id whose emit it
	// ran on, Emit that emit's index and Wire the index of the flow wire
	// it went along.
	Module string
	From   string
	Emit   int
	Wire   int
	// Exit is the run: Outcome OK with its Output, or Crashed, OOM or
	// Timeout with Detail. Usage.Wall is the handler's time alone.
	Exit Exit
	// Gap is the time from the sender's handler returning to this one's
	// starting: the hand-over inside the worker (and the hops before it
	// on other wires of the same sender).
	Gap time.Duration
}

// routeKey is the context key of a route.
type routeKey struct{}

// route is what WithRoute puts in a context.
type route struct {
	json []byte
	hops *[]Hop
}

// WithRoute returns ctx with route, the JSON of a same-worker route (see
// docs/runtime-protocol.md, "route"), for the invocation ctx is given to:
// a driver that passes it on appends the hops its worker made to *hops.
func WithRoute(ctx context.Context, routeJSON []byte, hops *[]Hop) context.Context {
	if len(routeJSON) == 0 || hops == nil {
		return ctx
	}
	return context.WithValue(ctx, routeKey{}, route{routeJSON, hops})
}

// RouteOf returns the route ctx carries and where its hops go, or nil.
func RouteOf(ctx context.Context) ([]byte, *[]Hop) {
	r, _ := ctx.Value(routeKey{}).(route)
	return r.json, r.hops
}

// wireHop is a hop as a worker writes it in its result.
type wireHop struct {
	RunID  string          `json:"run_id"`
	Module string          `json:"module"`
	From   string          `json:"from"`
	Emit   int             `json:"emit"`
	Wire   int             `json:"wire"`
	NS     int64           `json:"ns"`
	GapNS  int64           `json:"gap_ns"`
	Output json.RawMessage `json:"output"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Stack   string `json:"stack"`
	} `json:"error"`
}

// ParseHops reads the hops of a protocol-2 result: a JSON array of
// {run_id, module, from, emit, wire, ns, output | error}. An error code of
// oom is the OOM outcome, deadline Timeout, any other Crashed.
func ParseHops(b []byte) ([]Hop, error) {
	var ws []wireHop
	if err := json.Unmarshal(b, &ws); err != nil {
		return nil, fmt.Errorf("hops: %w", err)
	}
	hops := make([]Hop, 0, len(ws))
	for i, w := range ws {
		if w.RunID == "" || w.Module == "" || w.From == "" || w.Emit < 0 || w.Wire < 0 {
			return nil, fmt.Errorf("hops[%d]: run_id, module and from are required, emit and wire must not be negative", i)
		}
		h := Hop{RunID: w.RunID, Module: w.Module, From: w.From, Emit: w.Emit, Wire: w.Wire, Gap: time.Duration(max(w.GapNS, 0))}
		h.Exit.Usage.Wall = time.Duration(max(w.NS, 0))
		switch {
		case w.Error != nil:
			h.Exit.Outcome, h.Exit.Detail = Crashed, w.Error.Message
			if w.Error.Stack != "" {
				h.Exit.Detail += "\n" + w.Error.Stack
			}
			switch w.Error.Code {
			case "oom":
				h.Exit.Outcome = OOM
			case "deadline":
				h.Exit.Outcome = Timeout
			}
		case len(w.Output) == 0:
			return nil, fmt.Errorf("hops[%d]: output or error is required", i)
		default:
			h.Exit.Outcome, h.Exit.Output = OK, w.Output
		}
		hops = append(hops, h)
	}
	return hops, nil
}
