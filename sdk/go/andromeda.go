package andromeda

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/andromeda-runner/andromeda/contract"
)

// The invocation contract, re-exported so that a service imports one package.
type (
	// Input is what a service receives for one invocation.
	Input = contract.Input
	// Output is what a service returns: actions, emits, a state change, or
	// a noop reason. An output with neither actions, emits nor a noop reason
	// is rejected by the node.
	Output = contract.Output
	// Trigger says what fired an invocation.
	Trigger = contract.Trigger
	// HTTPInfo describes the request behind an http trigger.
	HTTPInfo = contract.HTTPInfo
	// Action is a declarative intent the node executes for the service.
	Action = contract.Action
	// Emit is a message published to a flow port or a bus topic.
	Emit = contract.Emit
	// StateChange is the declarative write of the service's state.
	StateChange = contract.StateChange
)

// Handler decides what to do with one invocation. It may panic: the run is
// then recorded as crashed with the panic message.
type Handler func(in Input) Output

// handler is the function registered with Handle; the reactor exports call it.
var handler Handler

// Handle registers h as the service and serves invocations with it.
//
// In a command (built without -buildmode), Handle reads one Input as JSON
// from standard input, calls h, writes the Output as JSON to standard output
// and exits the process: it does not return. Exit status 1 means the input
// could not be decoded or the output encoded (the reason goes to standard
// error); a panic in h exits with status 2 as every Go panic does.
//
// In a reactor (built with -buildmode=c-shared for wasip1), Handle only
// registers h and returns; the exported andromeda_invoke function calls it
// once per invocation. main.main never runs in a reactor, so Handle must be
// called from an init function there.
//
// Calling Handle from init works in both shapes, which is why the package
// documentation recommends it. Handle is not safe for concurrent use; call
// it once.
func Handle(h Handler) {
	if h == nil {
		panic("andromeda.Handle: nil handler")
	}
	handler = h
	if reactor() {
		return
	}
	os.Exit(runCommand(h, os.Stdin, os.Stdout, os.Stderr))
}

// runCommand serves one invocation over r and w and returns the exit status.
func runCommand(h Handler, r io.Reader, w, errw io.Writer) int {
	raw, err := io.ReadAll(r)
	if err != nil {
		fmt.Fprintf(errw, "andromeda: read input: %v\n", err)
		return 1
	}
	var out bytes.Buffer
	if err := serve(h, raw, &out); err != nil {
		fmt.Fprintf(errw, "andromeda: %v\n", err)
		return 1
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		fmt.Fprintf(errw, "andromeda: write output: %v\n", err)
		return 1
	}
	return 0
}

// serve decodes raw as an Input, calls h and appends the encoded Output to
// out. Unknown input fields are ignored, so a service keeps working when the
// node adds fields to the contract.
func serve(h Handler, raw []byte, out *bytes.Buffer) error {
	var in Input
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("decode input: %w", err)
	}
	result := h(in)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(result); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	return nil
}

// Noop is the output of a service that decides to do nothing; reason says
// why and is shown on the run. An empty reason makes the output invalid.
func Noop(reason string) Output {
	return Output{Noop: reason}
}

// Act is an output with one action of the given kind. params is encoded
// with encoding/json (a json.RawMessage is used as is; nil leaves params
// out). Act panics if params cannot be encoded, which is a programming
// error like an invalid regexp passed to regexp.MustCompile.
func Act(kind string, params any) Output {
	return Output{Actions: []Action{{Kind: kind, Params: mustJSON("Act", params)}}}
}

// Publish is an output with one message emitted to a bus topic. message is
// encoded like Act's params, and Publish panics the same way.
func Publish(topic string, message any) Output {
	return Output{Emit: []Emit{{Topic: topic, Message: mustJSON("Publish", message)}}}
}

// Send is an output with one message emitted to a flow output port. message
// is encoded like Act's params, and Send panics the same way.
func Send(port string, message any) Output {
	return Output{Emit: []Emit{{Port: port, Message: mustJSON("Send", message)}}}
}

func mustJSON(op string, v any) json.RawMessage {
	if v == nil {
		return nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("andromeda.%s: encode %T: %v", op, v, err))
	}
	return json.RawMessage(bytes.TrimRight(buf.Bytes(), "\n"))
}
