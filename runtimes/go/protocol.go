// Package worker is the Andromeda runtime protocol for Go: the message types
// of docs/runtime-protocol.md and Serve, which turns a Go program into a
// worker the process driver runs as an `exec` service. Its import path is
// github.com/andromeda-runner/andromeda/runtimes/go ("go" cannot name a
// package). It imports only the standard library, the contract package and
// internal/spin (the pipe reader it shares with the driver, itself standard
// library only), so a service built with it stays small; it holds no
// sandboxing and no node code (that is sandbox/process).
//
// A service:
//
//	package main
//
//	import (
//		"context"
//
//		"github.com/andromeda-runner/andromeda/contract"
//		worker "github.com/andromeda-runner/andromeda/runtimes/go"
//	)
//
//	func main() {
//		worker.Serve(func(ctx context.Context, in contract.Input) (contract.Output, error) {
//			return contract.Output{Noop: "nothing to do for " + in.RunID}, nil
//		})
//	}
//
// Build it for the node's platform (CGO_ENABLED=0 go build -o service .),
// name the binary in the manifest (runtime: {driver: process, language:
// exec, entry: service}) and the driver speaks the protocol with it over its
// standard input and output.
package worker

import "encoding/json"

// Version is the protocol version this package speaks: the "protocol" field
// of init and ready.
const Version = 1

// RouteVersion is the protocol version that adds same-worker routes: a
// runner that offers it (init's max_protocol) may send a worker that
// answers ready with it an invoke with a route, and the worker answers
// with the hops it made (docs/runtime-protocol.md, "Version 2").
const RouteVersion = 2

// DefaultMaxLine is the longest line either side may send when init names no
// max_line: 8 MiB, newline included.
const DefaultMaxLine = 8 << 20

// Message types, the "type" field of every message.
const (
	TypeInit     = "init"     // runner → worker: load modules
	TypeReady    = "ready"    // worker → runner: modules loaded, invocations welcome
	TypeInvoke   = "invoke"   // runner → worker: run one invocation
	TypeResult   = "result"   // worker → runner: an invocation's output
	TypeError    = "error"    // worker → runner: an invocation (or init) failed
	TypeLog      = "log"      // worker → runner: a log line
	TypeUsage    = "usage"    // worker → runner: custom usage counters of an invocation
	TypeCancel   = "cancel"   // runner → worker: stop an invocation
	TypeShutdown = "shutdown" // runner → worker: finish and exit
	TypeTest     = "test"     // runner → worker: run a module's self-test (if ready accepts it)
	TypeOffer    = "offer"    // runner → worker: what the runtime adds to the node's offer (if ready accepts it)
)

// Error codes, the "code" field of an error message. An empty code means
// CodeError.
const (
	CodeError       = "error"       // the handler threw or returned an error: the run is crashed
	CodePanic       = "panic"       // the handler panicked (Go) or raised a fatal error: crashed
	CodeCancelled   = "cancelled"   // the invocation stopped because of a cancel message
	CodeOOM         = "oom"         // the handler ran out of memory (MemoryError, heap limit): oom
	CodeBadInput    = "bad_input"   // the invoke message could not be decoded: crashed
	CodeInit        = "init"        // a module failed to load (answer to init; the worker then exits)
	CodeUnavailable = "unavailable" // the worker is shutting down and refused the invocation
	CodeDeadline    = "deadline"    // the invocation's deadline passed, or it could not finish by it: timeout
)

// Message is one line of the protocol. Every message has Type and ID; the
// other fields belong to the types named in their comments and are omitted
// from the others. Unknown fields are ignored by both sides.
type Message struct {
	Type string `json:"type"`
	ID   string `json:"id"`

	// init and ready
	Protocol int `json:"protocol,omitempty"`
	// init: the highest version the runner speaks; a worker may answer
	// ready with any version from Protocol to it.
	MaxProtocol int `json:"max_protocol,omitempty"`
	// init
	Service     string          `json:"service,omitempty"`
	Modules     []Module        `json:"modules,omitempty"`
	Config      json.RawMessage `json:"config,omitempty"`
	MaxLine     int             `json:"max_line,omitempty"`
	MaxInFlight int             `json:"max_in_flight,omitempty"`
	// ready
	Runtime     string `json:"runtime,omitempty"`
	Version     string `json:"version,omitempty"`
	Concurrency int    `json:"concurrency,omitempty"`
	// Accepts lists the optional request types the worker answers
	// (TypeTest, TypeOffer); the runner sends no other.
	Accepts []string `json:"accepts,omitempty"`

	// invoke and test
	Module   string          `json:"module,omitempty"`
	Input    json.RawMessage `json:"input,omitempty"`
	Deadline int64           `json:"deadline,omitempty"` // Unix milliseconds; 0: none
	// invoke, protocol 2: the modules the worker runs on the module's
	// emits itself (see RouteVersion)
	Route json.RawMessage `json:"route,omitempty"`

	// result
	Output json.RawMessage `json:"output,omitempty"`
	// result, protocol 2: the runs the worker made on the invoke's route
	Hops json.RawMessage `json:"hops,omitempty"`
	// error
	Error *Error `json:"error,omitempty"`
	// log
	Level string `json:"level,omitempty"`
	Text  string `json:"message,omitempty"`
	// usage: counter names and the amounts to add to them (numbers), kept
	// raw so that a bad report is dropped by the runner, not fatal.
	Counters json.RawMessage `json:"counters,omitempty"`

	// shutdown: Unix milliseconds by which the worker must have exited.
	By int64 `json:"by,omitempty"`
}

// Module is one service module a worker loads at init.
type Module struct {
	ID    string   `json:"id"`              // the name invoke messages use; "main" for the service itself
	Entry string   `json:"entry"`           // path of the module's entry inside the sandbox
	Paths []string `json:"paths,omitempty"` // extra import paths (a Python dependency dir)
}

// Error is the body of an error message.
type Error struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Stack   string `json:"stack,omitempty"`
}
