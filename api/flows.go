package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Flow is a flow applied to the node (the runner API's flows): who applied
// it, what its modules and wires are, whether it runs, and the document as
// applied.
type Flow struct {
	ID      string       `json:"id"`
	Version string       `json:"version"`
	Owner   string       `json:"owner"`
	Digest  string       `json:"digest"`
	Applied time.Time    `json:"applied"`
	Modules []FlowModule `json:"modules"`
	Wires   []FlowWire   `json:"wires"`
	// Running says the flow is started: fired messages run.
	Running bool `json:"running"`
	// Node is, in a cluster, the node that runs it (empty on a node
	// alone, and while no node holds it).
	Node string `json:"node,omitempty"`
	// Queued is how many messages wait in the flow's queue, those whose
	// flow runs are in flight included; InFlight how many flow runs are
	// in flight.
	Queued   uint64 `json:"queued"`
	InFlight int    `json:"in_flight"`
	// Context is the flow's context: what its modules read in their input
	// (flow_context) and write with compare-and-swap. It starts as the
	// document's context and carries over to new versions.
	Context map[string]json.RawMessage `json:"context,omitempty"`
	// Triggers are its cron, event and http triggers.
	Triggers []FlowTrigger `json:"triggers,omitempty"`
	// Document is the flow as applied, in JSON.
	Document json.RawMessage `json:"document"`
}

// FlowTrigger is one trigger of a flow.
type FlowTrigger struct {
	// Name is its place, "triggers[1]"; Kind cron, event or http.
	Name string `json:"name"`
	Kind string `json:"kind"`
	// On says what fires it: its interval or schedule, topic, or path.
	On string `json:"on"`
	// Module is where its message goes; empty: the entry modules.
	Module string `json:"module,omitempty"`
	// Next is a cron trigger's next tick while the flow runs.
	Next *time.Time `json:"next,omitempty"`
}

// FlowModule is one module of a flow.
type FlowModule struct {
	ID string `json:"id"`
	// Service is the service it runs; Language an inline module's.
	Service  string `json:"service,omitempty"`
	Language string `json:"language,omitempty"`
	// Runtime is where it runs: its placement, else its service's runtime
	// (an id of GET /v1/runtimes).
	Runtime string `json:"runtime"`
	// WhenGone is, for a module placed on a browser runtime, what its
	// messages do while the page is away: queue or failover. Away says no
	// page of the runtime is connected now.
	WhenGone string `json:"when_gone,omitempty"`
	Away     bool   `json:"away,omitempty"`
	// Waiting is how many messages wait for the module (a running flow).
	Waiting int `json:"waiting,omitempty"`
	// Ran is how many messages the module ran since the flow started on
	// this node, Failed how many of them failed; LastMinute how many it
	// ran in the last 60 seconds.
	Ran        uint64 `json:"ran,omitempty"`
	Failed     uint64 `json:"failed,omitempty"`
	LastMinute uint64 `json:"last_minute,omitempty"`
	// Breakpoint says a breakpoint holds the module's messages; Held are
	// the first of them (up to 20), oldest first.
	Breakpoint bool       `json:"breakpoint,omitempty"`
	Held       []FlowHeld `json:"held,omitempty"`
}

// FlowHeld is a message held at a breakpoint.
type FlowHeld struct {
	FlowRun string `json:"flow_run"`
	// Message is its id in the flow run; From the run that sent it (empty
	// for the flow's input).
	Message string          `json:"message"`
	From    string          `json:"from,omitempty"`
	Input   json.RawMessage `json:"input"`
}

// FlowStepResult answers POST /v1/flows/{id}/step (singleStepFlow): for
// each module a breakpoint held messages at, what running them one module
// further took and gave.
type FlowStepResult map[string]FlowModuleStep

// FlowModuleStep is one module's part of a single step: one entry per
// message it ran, in order, in each list.
type FlowModuleStep struct {
	InputStates  []json.RawMessage  `json:"input_states"`
	OutputStates [][]FlowStepOutput `json:"output_states"`
	// Errors are each run's error, empty when it had none.
	Errors []string `json:"errors"`
	// Runs are the module runs' ids (empty: none was recorded).
	Runs []string `json:"runs"`
}

// FlowStepOutput is one message a module run emitted to a port, and the
// modules it went to (none: dropped, no wire leaves the port).
type FlowStepOutput struct {
	Port    string          `json:"port"`
	Message json.RawMessage `json:"message"`
	To      []string        `json:"to"`
}

// FlowRun is one flow run: a message's way through a flow, each module
// run a step, and how it ended.
type FlowRun struct {
	ID      string    `json:"id"`
	Flow    string    `json:"flow"`
	Version string    `json:"version,omitempty"`
	Start   time.Time `json:"start"`
	// Duration is from the message's acceptance to the run's end.
	Duration time.Duration `json:"duration_ns"`
	// Outcome is ok or failed for a run that ended; queued for a message
	// accepted whose run has not ended (fire without waiting, or a wait
	// that ran out).
	Outcome string `json:"outcome"`
	// Error says why a failed run failed; Module is where.
	Error  string `json:"error,omitempty"`
	Module string `json:"module,omitempty"`
	// Steps are its module runs, in the order they ended: each is a run
	// (GET /v1/services/{service}/runs/{run}) with trigger kind flow.
	Steps []FlowStep `json:"steps"`
	// Dropped lists messages emitted to a port no wire leaves.
	Dropped []string `json:"dropped,omitempty"`
	// StepsCut is how many steps a record too large to keep whole left
	// out (it keeps the first 64).
	StepsCut int `json:"steps_cut,omitempty"`
	// Input is the message the flow run began with (kept up to 16 KiB).
	Input json.RawMessage `json:"input,omitempty"`
	// RerunOf is the failed flow run this one re-ran (flow rerun).
	RerunOf string `json:"rerun_of,omitempty"`
	// By names who sent its message: a token's name, or the trigger that
	// started it ("triggers[1] (event orders.new #42)").
	By string `json:"by,omitempty"`
	// DeadLetter says the message was aimed at a module the flow's
	// version running it does not have (a hot update removed it): it
	// failed without running (flow runs --dead-letters lists these).
	DeadLetter bool `json:"dead_letter,omitempty"`
	// Replayed says the run was taken up again after the node stopped
	// mid-run: the module runs recorded before were reused, not run again.
	Replayed bool `json:"replayed,omitempty"`
}

// FlowStep is one module run of a flow run.
type FlowStep struct {
	Module  string `json:"module"`
	Service string `json:"service"`
	// Run is the module run's id; empty when none started (the service
	// was not deployed).
	Run string `json:"run,omitempty"`
	// Message is the id of the message it took; From the module run that
	// sent it (empty for the flow's input).
	Message string `json:"message"`
	From    string `json:"from,omitempty"`
	Outcome string `json:"outcome"`
	// Queued is how long the message waited for the module.
	Queued time.Duration `json:"queued_ns"`
	// Reused says the run was recorded before a replay and not run again.
	Reused bool `json:"reused,omitempty"`
	// InWorker says the message reached the module inside the worker that
	// ran its sender (a same-worker hop), not through the node.
	InWorker bool `json:"in_worker,omitempty"`
	// Runtime is where the module ran when not where its service runs: a
	// browser runtime (browser/ID).
	Runtime string `json:"runtime,omitempty"`
	// Note says why it ran elsewhere than its placement (failed over).
	Note string `json:"note,omitempty"`
}

// FlowWire is one wire of a flow, its ends written module:port.
type FlowWire struct {
	From string `json:"from"`
	To   string `json:"to"`
	Loop int    `json:"loop,omitempty"`
}

// FlowApplied is the answer to applying a flow (addOrUpdateFlow).
type FlowApplied struct {
	Flow Flow `json:"flow"`
	// Created is true for a new flow, Unchanged for the same document as
	// the one applied (nothing written).
	Created   bool `json:"created,omitempty"`
	Unchanged bool `json:"unchanged,omitempty"`
	// DryRun is true when nothing was written on request.
	DryRun bool `json:"dry_run,omitempty"`
	// Changes say what changed from the version applied before, one line
	// each: "module score added", "wire parse:out → score:in removed".
	Changes []string `json:"changes,omitempty"`
	// DeadLetters is how many messages waiting in the flow's queue are
	// aimed at modules this version removes: dead letters unless they run
	// before it takes over (a Changes line names each module).
	DeadLetters int `json:"dead_letters,omitempty"`
}

// FlowMediaType is the Content-Type of a flow document written in the
// format of file name (.yaml or .yml, .json, .toml); "" for another.
func FlowMediaType(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return "application/yaml"
	case ".json":
		return "application/json"
	case ".toml":
		return "application/toml"
	}
	return ""
}

// ApplyFlow applies a flow document (addOrUpdateFlow) written in the
// format of contentType (FlowMediaType); dryRun checks it and says what
// would change without writing it.
func (c *Client) ApplyFlow(ctx context.Context, contentType string, doc []byte, dryRun bool) (FlowApplied, error) {
	var a FlowApplied
	path := "/v1/flows"
	if dryRun {
		path += "?dry_run=true"
	}
	return a, c.do(ctx, http.MethodPost, path, contentType, bytes.NewReader(doc), &a)
}

// Flows lists the flows (listFlowsForRuntime): every one the caller may
// see, or with runtime only those with a module on that runtime.
func (c *Client) Flows(ctx context.Context, runtime string) ([]Flow, error) {
	var fs []Flow
	path := "/v1/flows"
	if runtime != "" {
		path += "?runtime=" + url.QueryEscape(runtime)
	}
	return fs, c.getJSON(ctx, path, &fs)
}

// Flow returns one flow.
func (c *Client) Flow(ctx context.Context, id string) (Flow, error) {
	var f Flow
	return f, c.getJSON(ctx, "/v1/flows/"+url.PathEscape(id), &f)
}

// RemoveFlow removes a flow (removeFlow).
func (c *Client) RemoveFlow(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/flows/"+url.PathEscape(id), "", nil, nil)
}

// StartFlow starts a flow (startFlow): messages fired at it run, again
// after the node restarts, until it is stopped. Starting a running flow
// changes nothing.
func (c *Client) StartFlow(ctx context.Context, id string) (Flow, error) {
	var f Flow
	return f, c.do(ctx, http.MethodPost, "/v1/flows/"+url.PathEscape(id)+"/start", "", nil, &f)
}

// StopFlow stops a flow (stopFlow): the flow runs in flight end first (up
// to 30 s; the rest run at the next start); messages fired while it is
// stopped are refused.
func (c *Client) StopFlow(ctx context.Context, id string) (Flow, error) {
	var f Flow
	return f, c.do(ctx, http.MethodPost, "/v1/flows/"+url.PathEscape(id)+"/stop", "", nil, &f)
}

// FireFlow sends a message into a running flow (see FlowFireRequest). The
// message is stored before the answer.
func (c *Client) FireFlow(ctx context.Context, id string, req FlowFireRequest) (FlowRun, error) {
	var r FlowRun
	body, err := json.Marshal(req)
	if err != nil {
		return r, err
	}
	return r, c.do(ctx, http.MethodPost, "/v1/flows/"+url.PathEscape(id)+"/fire", "application/json", bytes.NewReader(body), &r)
}

// FlowFireRequest is the body of POST /v1/flows/{id}/fire.
type FlowFireRequest struct {
	// Message is the message, any JSON; absent: none.
	Message json.RawMessage `json:"message,omitempty"`
	// Module sends it to that module; empty: to every entry module (those
	// no wire leads to, loops aside).
	Module string `json:"module,omitempty"`
	// Wait, a Go duration up to 5m, waits that long for the flow run to
	// end and answers with its record (200); otherwise, or when the wait
	// runs out, the answer is 202 with the flow run's id and outcome
	// queued.
	Wait string `json:"wait,omitempty"`
}

// FlowRuns lists a flow's last runs, newest first (limit 0: the node's
// default).
func (c *Client) FlowRuns(ctx context.Context, id string, limit int) ([]FlowRun, error) {
	return c.flowRuns(ctx, id, limit, false)
}

// FlowDeadLetters lists the dead letters among a flow's last 1,000 runs,
// newest first, at most limit (0: the node's default).
func (c *Client) FlowDeadLetters(ctx context.Context, id string, limit int) ([]FlowRun, error) {
	return c.flowRuns(ctx, id, limit, true)
}

func (c *Client) flowRuns(ctx context.Context, id string, limit int, dead bool) ([]FlowRun, error) {
	var rs []FlowRun
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if dead {
		q.Set("dead_letter", "true")
	}
	path := "/v1/flows/" + url.PathEscape(id) + "/runs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return rs, c.getJSON(ctx, path, &rs)
}

// SetBreakpoint sets (on) or removes a breakpoint at a flow's module
// (setBreakPointAtModule, removeBreakPointAtModule; the operator): the
// module holds the messages that reach it until a step or the removal.
func (c *Client) SetBreakpoint(ctx context.Context, id, module string, on bool) (Flow, error) {
	var f Flow
	method := http.MethodPut
	if !on {
		method = http.MethodDelete
	}
	return f, c.do(ctx, method, "/v1/flows/"+url.PathEscape(id)+"/breakpoints/"+url.PathEscape(module), "", nil, &f)
}

// StepFlow advances each message held at a breakpoint of a running flow
// one module (singleStepFlow; the operator).
func (c *Client) StepFlow(ctx context.Context, id string) (FlowStepResult, error) {
	var r FlowStepResult
	return r, c.do(ctx, http.MethodPost, "/v1/flows/"+url.PathEscape(id)+"/step", "", nil, &r)
}

// FlowRerunRequest is the body of POST /v1/flows/{id}/runs/{run}/rerun.
type FlowRerunRequest struct {
	// From is the module to run again from; empty: the one the flow run
	// failed at.
	From string `json:"from,omitempty"`
	// Wait is as FlowFireRequest's.
	Wait string `json:"wait,omitempty"`
}

// RerunFlow re-runs a failed flow run from a module (the operator), in a
// new flow run that starts with the message the module got in the failed
// one.
func (c *Client) RerunFlow(ctx context.Context, id, run string, req FlowRerunRequest) (FlowRun, error) {
	var r FlowRun
	body, err := json.Marshal(req)
	if err != nil {
		return r, err
	}
	return r, c.do(ctx, http.MethodPost, "/v1/flows/"+url.PathEscape(id)+"/runs/"+url.PathEscape(run)+"/rerun", "application/json", bytes.NewReader(body), &r)
}
