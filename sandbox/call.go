package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
)

// Result is one invocation judged against the contract.
type Result struct {
	Outcome Outcome
	Output  contract.Output // valid only for OK and Noop
	Raw     []byte          // raw guest output, as returned
	Error   string          // why the outcome is not OK or Noop
	Usage   Usage
}

// Call runs one invocation on d and judges its output: this is the
// invocation contract of docs/design.md section 5, implemented once for every
// driver. The timeout, when positive, bounds the call (ctx's own deadline
// still applies). An error is returned only when the runner itself failed.
func Call(ctx context.Context, d Deployment, in contract.Input, timeout time.Duration) (Result, error) {
	if in.State == nil {
		in.State = map[string]json.RawMessage{}
	}
	if in.Config == nil {
		in.Config = map[string]any{}
	}
	input, err := json.Marshal(in)
	if err != nil {
		return Result{Outcome: Rejected, Error: err.Error()}, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return CallRaw(ctx, d, input, timeout)
}

// CallRaw is Call for input that is already the contract's JSON.
func CallRaw(ctx context.Context, d Deployment, input []byte, timeout time.Duration) (Result, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	exit, err := d.Invoke(ctx, input)
	if err != nil {
		return Result{Outcome: Error, Error: err.Error(), Usage: exit.Usage}, err
	}
	return Judge(exit), nil
}

// Precheck is what every driver's Invoke does first: a stopped deployment
// refuses with ErrStopped, a context already past its deadline is a Timeout
// that never started, and a cancelled one returns its error. When done is
// true, Invoke returns exit and err as they are.
func Precheck(ctx context.Context, service string, stopped bool) (done bool, exit Exit, err error) {
	switch cerr := ctx.Err(); {
	case stopped:
		return true, Exit{}, fmt.Errorf("invoke %s: %w", service, ErrStopped)
	case errors.Is(cerr, context.DeadlineExceeded):
		return true, Exit{Outcome: Timeout, Detail: "the deadline passed before the invocation started"}, nil
	case cerr != nil:
		return true, Exit{}, fmt.Errorf("invoke %s: %w", service, cerr)
	}
	return false, Exit{}, nil
}

// Judge turns a driver's Exit into a Result by checking the output against
// the contract: a valid output with actions or emits is OK, one with only a
// noop reason is Noop, anything else is Error with the rule it broke.
func Judge(exit Exit) Result {
	r := Result{Outcome: exit.Outcome, Raw: exit.Output, Error: exit.Detail, Usage: exit.Usage}
	if exit.Outcome != OK {
		if r.Error == "" {
			r.Error = string(exit.Outcome)
		}
		return r
	}
	out, err := contract.ParseOutput(exit.Output)
	if err != nil {
		r.Outcome = Error
		r.Error = err.Error()
		if exit.Detail != "" {
			r.Error += "; " + exit.Detail
		}
		return r
	}
	r.Output = out
	r.Error = ""
	if len(out.Actions) == 0 && len(out.Emit) == 0 {
		r.Outcome = Noop
	}
	return r
}
