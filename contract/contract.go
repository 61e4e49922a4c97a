// Package contract holds the invocation contract every service implements,
// whatever driver runs it: the Input a service receives and the Output it
// returns (docs/design.md section 5), and the one place where an output is judged
// valid. It imports only the standard library and strictjson, which imports
// only the standard library, so that guest code compiled for wasip1 (sdk/go)
// can share these types with the node.
package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
)

// Input is what a service receives for one invocation.
type Input struct {
	RunID   string          `json:"run_id"`
	Service string          `json:"service"`
	Trigger Trigger         `json:"trigger"`
	Message json.RawMessage `json:"message,omitempty"`
	// Args is the argument vector of a run started with
	// `andromeda run NAME -- ARG...` (the seed's run_command); absent
	// otherwise.
	Args   []string                   `json:"args,omitempty"`
	State  map[string]json.RawMessage `json:"state"`
	Config map[string]any             `json:"config"`
	// FlowContext is the flow's context as the run found it, for a flow
	// module's run (trigger kind flow); absent otherwise.
	FlowContext map[string]json.RawMessage `json:"flow_context,omitempty"`
}

// Trigger says what fired an invocation.
type Trigger struct {
	Kind  string `json:"kind"`            // cron | event | manual | http | flow
	Name  string `json:"name,omitempty"`  // e.g. "triggers[0]"
	Topic string `json:"topic,omitempty"` // event triggers
	Seq   uint64 `json:"seq,omitempty"`   // event triggers: the event's sequence on the bus
	// Publisher names who published the event (event triggers): a token's
	// name, or "service:NAME" for another run's emit.
	Publisher string    `json:"publisher,omitempty"`
	At        string    `json:"at,omitempty"`   // RFC 3339 time the trigger fired
	HTTP      *HTTPInfo `json:"http,omitempty"` // http triggers
	Flow      *FlowInfo `json:"flow,omitempty"` // flow triggers: the module run's place in its flow run
}

// FlowInfo places a module run in its flow run.
type FlowInfo struct {
	// Flow and Version are the flow's id and version.
	Flow    string `json:"flow"`
	Version string `json:"version"`
	// Run is the flow run's id.
	Run string `json:"run"`
	// Module is the module's id in the flow.
	Module string `json:"module"`
	// Port is the input port the message came in on.
	Port string `json:"port"`
	// Message is the message's id: the flow run's for its input, derived
	// from the sending module run's otherwise.
	Message string `json:"message"`
	// From is the module that sent the message; empty for the flow's input.
	From string `json:"from,omitempty"`
}

// HTTPInfo describes the request behind an http trigger.
type HTTPInfo struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
}

// HTTPRequest is the message of a run fired by an http trigger (a
// webhook): the request as it came, less its credentials.
type HTTPRequest struct {
	// Method is the request's method: GET, POST, PUT, PATCH or DELETE.
	Method string `json:"method"`
	// Path is the webhook path, as the trigger names it.
	Path string `json:"path"`
	// Query is the query string, parsed; absent when empty.
	Query map[string][]string `json:"query,omitempty"`
	// Headers are the request's headers by canonical name, without
	// Authorization and the trigger's signature header.
	Headers map[string][]string `json:"headers,omitempty"`
	// Body is the body as JSON when the Content-Type is JSON
	// (application/json or +json) and it parses; otherwise a JSON string
	// of its text when it is valid UTF-8. Absent when empty.
	Body json.RawMessage `json:"body,omitempty"`
	// BodyBase64 is the body in standard base64 when it is not valid
	// UTF-8 (and not JSON); Body is then absent.
	BodyBase64 string `json:"body_base64,omitempty"`
}

// Output is what a service returns. A service that decides to do nothing
// sets Noop to the reason; an output with neither actions, emits, an HTTP
// response nor a noop reason is invalid.
type Output struct {
	Actions []Action     `json:"actions,omitempty"`
	Emit    []Emit       `json:"emit,omitempty"`
	State   *StateChange `json:"state,omitempty"`
	// FlowContext is a flow module run's write of its flow's context,
	// applied key by key against what the run read (compare-and-swap).
	FlowContext *StateChange `json:"flow_context,omitempty"`
	Noop        string       `json:"noop,omitempty"`
	// HTTP is the answer to the request of an http trigger (a webhook);
	// ignored for other triggers. Optional: without it the webhook is
	// answered with the output itself, or 204 for a noop.
	HTTP *HTTPResponse `json:"http,omitempty"`
}

// HTTPResponse is a service's answer to a webhook request.
type HTTPResponse struct {
	// Status is the HTTP status, 200 to 599. Default 200.
	Status int `json:"status,omitempty"`
	// Headers are response headers, at most MaxHTTPHeaders, by name
	// ([A-Za-z0-9-] tokens); values one line, at most 4096 bytes. The
	// framing headers (Content-Length, Transfer-Encoding, Connection, ...)
	// and the node's own Andromeda-* headers are refused.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is sent as its text when it is a JSON string (Content-Type
	// text/plain; charset=utf-8 unless Headers set one), as JSON for any
	// other value (application/json), and empty when absent or null. At
	// most MaxHTTPBody bytes.
	Body json.RawMessage `json:"body,omitempty"`
}

// Action is a declarative intent executed by the node, never by the service.
type Action struct {
	Kind   string          `json:"kind"`
	Params json.RawMessage `json:"params,omitempty"`
}

// Emit is a message a service publishes to a flow port or a bus topic.
type Emit struct {
	Port    string          `json:"port,omitempty"`
	Topic   string          `json:"topic,omitempty"`
	Message json.RawMessage `json:"message"`
}

// StateChange is the declarative write a service asks for: keys to set and
// keys to delete, applied with compare-and-swap against the snapshot the
// service read.
type StateChange struct {
	Set    map[string]json.RawMessage `json:"set,omitempty"`
	Delete []string                   `json:"delete,omitempty"`
}

// Empty reports whether the change writes nothing.
func (c *StateChange) Empty() bool {
	return c == nil || (len(c.Set) == 0 && len(c.Delete) == 0)
}

var (
	// ErrNoReason is returned for an output that asks for nothing and gives
	// no noop reason.
	ErrNoReason = errors.New("output has no actions, no emits and no noop reason: a service that does nothing must say why")
	// ErrBadOutput wraps output that is not the contract's JSON object.
	ErrBadOutput = errors.New("output is not a valid contract object")
)

// Limits on an output, so a guest cannot make the node store or execute
// unbounded lists.
const (
	MaxActions   = 256
	MaxEmits     = 256
	MaxStateKeys = 1024
	MaxKeyLen    = 256
	// MaxHTTPBody caps the body of an HTTPResponse, as sent.
	MaxHTTPBody = 1 << 20
	// MaxHTTPHeaders caps the headers of an HTTPResponse.
	MaxHTTPHeaders = 64
)

// ParseOutput decodes raw guest output strictly, by strictjson's rules (one
// JSON object, white space around it allowed; unknown fields, trailing data
// and values of the wrong type are errors that wrap ErrBadOutput), and
// checks it with Validate.
func ParseOutput(raw []byte) (Output, error) {
	var out Output
	if err := strictjson.Unmarshal(raw, &out); err != nil {
		return Output{}, fmt.Errorf("%w: %w", ErrBadOutput, err)
	}
	if err := out.Validate(); err != nil {
		return Output{}, err
	}
	return out, nil
}

// Validate checks the rules of the contract that JSON decoding cannot:
// a noop needs a reason, actions need a kind, emits need one destination,
// lists and keys stay within bounds.
func (o Output) Validate() error {
	var errs []error
	if len(o.Actions) == 0 && len(o.Emit) == 0 && o.HTTP == nil && strings.TrimSpace(o.Noop) == "" {
		if !o.State.Empty() || !o.FlowContext.Empty() {
			return fmt.Errorf("%w (a state change alone is not a decision)", ErrNoReason)
		}
		return ErrNoReason
	}
	if len(o.Actions) > MaxActions {
		errs = append(errs, fmt.Errorf("actions: at most %d per run, got %d", MaxActions, len(o.Actions)))
	}
	for i, a := range o.Actions {
		if strings.TrimSpace(a.Kind) == "" {
			errs = append(errs, fmt.Errorf("actions[%d].kind: must not be empty", i))
		}
	}
	if len(o.Emit) > MaxEmits {
		errs = append(errs, fmt.Errorf("emit: at most %d per run, got %d", MaxEmits, len(o.Emit)))
	}
	for i, e := range o.Emit {
		if (e.Port == "") == (e.Topic == "") {
			errs = append(errs, fmt.Errorf("emit[%d]: exactly one of port and topic must be set", i))
		}
	}
	errs = append(errs, o.State.check("state")...)
	errs = append(errs, o.FlowContext.check("flow_context")...)
	if o.HTTP != nil {
		errs = append(errs, o.HTTP.check()...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrBadOutput, errors.Join(errs...))
	}
	return nil
}

// check is what is wrong with c, its fields under name.
func (c *StateChange) check(name string) []error {
	if c == nil {
		return nil
	}
	var errs []error
	if n := len(c.Set) + len(c.Delete); n > MaxStateKeys {
		errs = append(errs, fmt.Errorf("%s: at most %d keys per change, got %d", name, MaxStateKeys, n))
	}
	for k := range c.Set {
		if err := checkKey(k); err != nil {
			errs = append(errs, fmt.Errorf("%s.set[%q]: %w", name, k, err))
		}
	}
	for i, k := range c.Delete {
		if err := checkKey(k); err != nil {
			errs = append(errs, fmt.Errorf("%s.delete[%d]: %w", name, i, err))
		}
	}
	return errs
}

func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("key must not be empty")
	case len(k) > MaxKeyLen:
		return fmt.Errorf("key must be at most %d bytes", MaxKeyLen)
	}
	return nil
}

// reservedHeaders are the response headers a service may not set: HTTP's
// framing, which the node's server owns, and the node's own.
var reservedHeaders = map[string]bool{
	"content-length": true, "transfer-encoding": true, "connection": true,
	"keep-alive": true, "upgrade": true, "trailer": true, "te": true,
	"proxy-connection": true, "date": true,
}

// check lists what breaks the rules of an HTTPResponse.
func (h *HTTPResponse) check() []error {
	var errs []error
	if h.Status != 0 && (h.Status < 200 || h.Status > 599) {
		errs = append(errs, fmt.Errorf("http.status: must be from 200 to 599, got %d", h.Status))
	}
	if len(h.Headers) > MaxHTTPHeaders {
		errs = append(errs, fmt.Errorf("http.headers: at most %d allowed, got %d", MaxHTTPHeaders, len(h.Headers)))
	}
	for name, v := range h.Headers {
		p := strictjson.KeyPath("http.headers", name)
		lower := strings.ToLower(name)
		switch {
		case !headerName(name):
			errs = append(errs, fmt.Errorf("%s: a header name must be 1 to 128 of [A-Za-z0-9-]", p))
		case reservedHeaders[lower] || strings.HasPrefix(lower, "andromeda-"):
			errs = append(errs, fmt.Errorf("%s: set by the node, not by a service", p))
		case len(v) > 4096 || strings.ContainsAny(v, "\r\n\x00"):
			errs = append(errs, fmt.Errorf("%s: a value must be one line of at most 4096 bytes", p))
		}
	}
	if len(h.Body) > MaxHTTPBody {
		errs = append(errs, fmt.Errorf("http.body: at most %d bytes, got %d", MaxHTTPBody, len(h.Body)))
	}
	return errs
}

// headerName reports whether s is a header name a service may use.
func headerName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
