// Package flow reads and checks flow documents: modules, each a service
// or a piece of inline code in a language, wired output port to input
// port into a graph that a node runs. It does no I/O and knows no node:
// Parse decodes a document strictly (YAML, JSON or TOML, through package
// strictdoc, every problem with its path), and Check judges a decoded flow
// against a Catalog of the services and runtimes there are, reporting every
// problem at once.
//
// A flow document:
//
//	id: orders                  # [a-z0-9-]{1,63}, like a service's name
//	version: 1.0.0              # MAJOR.MINOR.PATCH[-prerelease]
//	context: {threshold: 10}    # the flow's initial context, any JSON mapping
//	modules:
//	  - {id: parse, service: order-parser}
//	  - id: score               # inline: a service of its own, made from the code
//	    language: python
//	    code: |
//	      def handle(input): ...
//	    runtime: process/python # optional placement: a runtime (andromeda runtimes) that runs the language
//	  - {id: show, service: order-view, runtime: browser/kiosk, when_gone: failover}  # Node.js code on a page
//	  - {id: store, service: order-store, config: {table: orders}}
//	wires:
//	  - {from: "parse:out", to: "score:in"}
//	  - {from: "score:out", to: "store:in"}
//	  - {from: "score:retry", to: "parse:in", loop: 3}   # a cycle, at most 3 rounds
//	triggers:                   # optional: flow runs started by themselves
//	  - {kind: cron, every: 1m, input: {tick: true}}  # to every entry module
//	  - {kind: event, topic: orders.new, module: parse}
//	  - {kind: http, path: /hooks/orders, auth: {bearer: orders-hook}}
//
// A port is written module:port; a bare module id means its default port
// (out on the from side, in on the to side). A module's error port
// carries the messages it failed on.
package flow

import (
	"fmt"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Bounds of a flow document.
const (
	// MaxSize bounds a flow document, in bytes.
	MaxSize = 1 << 20
	// MaxModules and MaxWires bound a flow's graph.
	MaxModules = 256
	MaxWires   = 1024
	// MaxTriggers bounds a flow's triggers.
	MaxTriggers = 16
	// MaxCode bounds an inline module's code, in bytes.
	MaxCode = 256 << 10
	// MaxLoop bounds a loop wire's rounds.
	MaxLoop = 1000
	// maxDepth bounds the nesting of a document, configs and context
	// included.
	maxDepth = 32
)

// Default ports: a wire end without a port names these.
const (
	PortIn    = "in"
	PortOut   = "out"
	PortError = "error"
)

// Flow is a flow document.
type Flow struct {
	// ID names the flow on a node: [a-z0-9-]{1,63}, starting with a
	// letter. Required.
	ID string `json:"id"`
	// Version is MAJOR.MINOR.PATCH with an optional -prerelease. Required.
	Version string `json:"version"`
	// Description says what the flow is for, at most 4096 characters.
	Description string `json:"description,omitempty"`
	// Context is the flow's initial context: a mapping every module reads
	// in its input and may change, kept across runs and versions.
	Context map[string]any `json:"context,omitempty"`
	// Modules are the flow's steps, 1 to MaxModules.
	Modules []Module `json:"modules"`
	// Wires join an output port of one module to an input port of
	// another, at most MaxWires.
	Wires []Wire `json:"wires,omitempty"`
	// Triggers start flow runs by themselves while the flow runs, at most
	// MaxTriggers. A flow is also fired by hand (flow fire) without one.
	Triggers []Trigger `json:"triggers,omitempty"`
}

// Trigger starts a flow run: a cron trigger on a schedule or an interval,
// an event trigger on each event published on its topic, or an http
// trigger on each request to its webhook path, with the fields and rules
// of a service's trigger of the same kind. Its message (a cron trigger's
// input, an event's message, the request) goes to Module, or, when
// Module is empty, to every entry module.
type Trigger struct {
	// Kind is cron, event or http. Required.
	Kind string `json:"kind"`
	// Module is the module the message goes to; empty: the entries.
	Module string `json:"module,omitempty"`
	// Every and Schedule: a cron trigger's interval or cron expression
	// (exactly one).
	Every    manifest.Duration `json:"every,omitzero"`
	Schedule string            `json:"schedule,omitempty"`
	// Topic is an event trigger's topic.
	Topic string `json:"topic,omitempty"`
	// Input is the message of a cron trigger's flow runs.
	Input any `json:"input,omitempty"`
	// Path, Methods and Auth are an http trigger's webhook: its path
	// under /hooks/, the methods it answers (default POST) and how a
	// request is authenticated (none, {bearer: SECRET}, {hmac: {...}}).
	Path    string            `json:"path,omitempty"`
	Methods []string          `json:"methods,omitempty"`
	Auth    manifest.HookAuth `json:"auth,omitzero"`
}

// Manifest is t as a service's trigger, which the node schedules and
// subscribes like one.
func (t Trigger) Manifest() manifest.Trigger {
	return manifest.Trigger{Kind: manifest.TriggerKind(t.Kind), Every: t.Every, Schedule: t.Schedule, Topic: t.Topic, Input: t.Input,
		Path: t.Path, Methods: slices.Clone(t.Methods), Auth: t.Auth}
}

// Module is one step of a flow: a service the node has (Service), or
// inline code (Language and Code) that becomes a service of its own,
// admitted by the same policy.
type Module struct {
	// ID names the module in the flow, by a service name's rule. Required.
	ID string `json:"id"`
	// Service is the name of the service the module runs.
	Service string `json:"service,omitempty"`
	// Language and Code are an inline module: its language (one a
	// runtime of the node runs: node, python) and its source.
	Language string `json:"language,omitempty"`
	Code     string `json:"code,omitempty"`
	// Runtime places the module on a runtime, by its id as GET
	// /v1/runtimes lists it; empty: where its service runs. A module of a
	// service runs where its service runs, or, when its service is
	// Node.js code, on a browser runtime (browser/ID: a page connected at
	// /runtime/browser), which runs the same module code.
	Runtime string `json:"runtime,omitempty"`
	// WhenGone is what a module placed on a browser runtime does with its
	// messages while the page is away: queue (the default) keeps them, in
	// order, until a page of that runtime is back; failover runs them
	// where the module's service runs until it is.
	WhenGone string `json:"when_gone,omitempty"`
	// Config is the module's configuration, passed in its input.
	Config map[string]any `json:"config,omitempty"`
}

// What a module placed on a browser runtime does while its page is away
// (Module.WhenGone).
const (
	WhenGoneQueue    = "queue"
	WhenGoneFailover = "failover"
)

// BrowserPrefix starts the id of a browser runtime: browser/ID.
const BrowserPrefix = "browser/"

// OnBrowser says m is placed on a browser runtime.
func (m Module) OnBrowser() bool { return strings.HasPrefix(m.Runtime, BrowserPrefix) }

// Wire joins From, "module:port" (an output port), to To, "module:port"
// (an input port). A bare module id names its default port: out for From,
// in for To.
type Wire struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Loop marks a wire that closes a cycle: a message may go round the
	// cycle through this wire at most Loop times (1 to MaxLoop). A cycle
	// with no loop wire is refused.
	Loop int `json:"loop,omitempty"`
}

// End is one end of a wire: a module and one of its ports.
type End struct {
	Module, Port string
}

func (e End) String() string { return e.Module + ":" + e.Port }

// ParseEnd reads a wire end, "module:port" or "module" (then port is
// def).
func ParseEnd(s, def string) (End, error) {
	mod, port, ok := strings.Cut(s, ":")
	switch {
	case s == "":
		return End{}, fmt.Errorf("required")
	case !ok:
		port = def
	case port == "" || strings.Contains(port, ":"):
		return End{}, fmt.Errorf("must be module:port or module, got %q", s)
	}
	return End{Module: mod, Port: port}, nil
}

// Errors is every problem found with a flow, each with its path.
type Errors = strictdoc.Errors[document]

// FieldError is one problem with a flow.
type FieldError = strictdoc.FieldError[document]

// document names a flow in errors about it as a whole.
type document struct{}

// Name returns "flow".
func (document) Name() string { return "flow" }

var strict = strictdoc.Decoder[document]{MaxSize: MaxSize, MaxDepth: maxDepth, Hooks: manifest.TriggerHooks()}

// Parse decodes a flow document written in format f strictly: one
// mapping, no unknown field or duplicate key, values of the right types.
// The error is an Errors listing every problem. It does not check the
// rules of Check.
func Parse(f strictdoc.Format, data []byte) (*Flow, error) {
	fl := new(Flow)
	if err := strict.Decode(f, data, fl); err != nil {
		return nil, err
	}
	return fl, nil
}

// ParseFile is Parse with the format told by the file name's extension
// (.yaml, .yml, .json, .toml).
func ParseFile(name string, data []byte) (*Flow, error) {
	f, ok := strictdoc.FormatOf(name)
	if !ok {
		return nil, fmt.Errorf("flow %s: the name must end in .yaml, .yml, .json or .toml", name)
	}
	return Parse(f, data)
}
