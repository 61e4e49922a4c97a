package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"time"
)

// accepts lists the request types o answers, for the ready message.
func (o Options) accepts() []string {
	var out []string
	if o.Test != nil {
		out = append(out, TypeTest)
	}
	if o.Offer != nil {
		out = append(out, TypeOffer)
	}
	return out
}

// TestResult is the output of a result answering a test message: whether
// the module has a self-test that ran (and passed; a failure is an error
// message).
type TestResult struct {
	Ran bool `json:"ran"`
}

// OfferResult is the output of a result answering an offer message.
type OfferResult struct {
	Properties map[string]any `json:"properties"`
}

// request answers a test or offer message: a result, or an error with the
// reason it failed. A panic is an error too.
func (s *server) request(base context.Context, m Message) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(base)
	if m.Deadline > 0 {
		ctx, cancel = context.WithDeadline(base, time.UnixMilli(m.Deadline))
	}
	defer cancel()
	reply := func() (reply *Message) {
		defer func() {
			if r := recover(); r != nil {
				reply = &Message{Type: TypeError, ID: m.ID, Error: &Error{Code: CodePanic, Message: fmt.Sprintf("panic: %v", r), Stack: string(debug.Stack())}}
			}
		}()
		var out any
		var err error
		switch {
		case m.Type == TypeTest && s.o.Test != nil:
			err = s.o.Test(ctx)
			out = TestResult{Ran: true}
		case m.Type == TypeTest:
			out = TestResult{}
		case s.o.Offer != nil:
			var props map[string]any
			props, err = s.o.Offer(ctx)
			out = OfferResult{Properties: props}
		default:
			err = fmt.Errorf("this worker has no %s answer", m.Type)
		}
		if err != nil {
			return &Message{Type: TypeError, ID: m.ID, Error: &Error{Code: CodeError, Message: err.Error()}}
		}
		raw, err := json.Marshal(out)
		if err != nil {
			return &Message{Type: TypeError, ID: m.ID, Error: &Error{Code: CodeError, Message: "encode " + m.Type + " answer: " + err.Error()}}
		}
		return &Message{Type: TypeResult, ID: m.ID, Output: raw}
	}()
	_ = s.send(reply)
}
