package api

import (
	"context"
	"net/url"
	"time"
)

// What became of one trigger evaluation (WhyEvaluation.Result).
const (
	// WhyRan: the service ran; Outcome says how it ended (ok, noop,
	// error, timeout, crashed, oom).
	WhyRan = "ran"
	// WhySkipped: the firing was recorded without running; Cause says
	// why (WhyCauseUnhealthy, WhyCauseConcurrency, WhyCauseRate, or
	// other).
	WhySkipped = "skipped"
	// WhyMissed: ticks that fell due while the node was down and did not
	// run (catch_up); Ticks counts them.
	WhyMissed = "missed"
	// WhyRejected: the run's output broke a declared capability or cap;
	// nothing of it was executed.
	WhyRejected = "rejected"
	// WhyDeadLetter: an event whose runs failed events.max_deliver times;
	// it will not be delivered again.
	WhyDeadLetter = "dead_letter"
)

// Causes of a skipped evaluation (WhyEvaluation.Cause).
const (
	WhyCauseUnhealthy   = "unhealthy"
	WhyCauseConcurrency = "concurrency"
	WhyCauseRate        = "rate cap"
	WhyCauseOther       = "other"
)

// WhyEvaluation is one evaluation of a trigger and what became of it.
type WhyEvaluation struct {
	// At is when the trigger fired: the scheduled tick of a cron trigger,
	// the publish time of an event, the request time of a webhook.
	At time.Time `json:"at"`
	// Trigger names the trigger ("triggers[0]"), Kind its kind.
	Trigger string `json:"trigger"`
	Kind    string `json:"kind"`
	// Result is WhyRan, WhySkipped, WhyMissed, WhyRejected or
	// WhyDeadLetter.
	Result string `json:"result"`
	// Outcome is the run's recorded outcome.
	Outcome string `json:"outcome"`
	// Cause classifies a skipped evaluation.
	Cause string `json:"cause,omitempty"`
	// RunID is the run record's id (andromeda runs show).
	RunID string `json:"run_id"`
	// Reason is the record's noop reason or error.
	Reason string `json:"reason,omitempty"`
	// Ticks counts the ticks a missed evaluation stands for.
	Ticks int `json:"ticks,omitempty"`
	// Seq is the event's sequence (event triggers).
	Seq uint64 `json:"seq,omitempty"`
}

// WhyTrigger sums up the evaluations of one trigger in the window.
type WhyTrigger struct {
	Name string `json:"name"` // triggers[i]
	Kind string `json:"kind"`
	Spec string `json:"spec"` // "every 10s", "event orders.new", ...
	// Evaluations counts the evaluations listed, by result in Results and
	// skipped ones by cause in Skipped; MissedTicks counts the ticks the
	// missed evaluations stand for.
	Evaluations int            `json:"evaluations"`
	Results     map[string]int `json:"results,omitempty"`
	Outcomes    map[string]int `json:"outcomes,omitempty"`
	Skipped     map[string]int `json:"skipped,omitempty"`
	MissedTicks int            `json:"missed_ticks,omitempty"`
	// Next is the next due tick of a cron trigger ("not due" before it);
	// absent for other kinds and for a service not deployed.
	Next time.Time `json:"next,omitzero"`
	// Waiting is how many events of an event trigger are published and
	// not settled yet: not delivered, or delivered and not acknowledged
	// (its durable consumer's pending and ack-pending counts). Absent for
	// other kinds, or when the consumer could not be read.
	Waiting *uint64 `json:"waiting,omitempty"`
}

// Why answers "why didn't it run?" for one service: every trigger
// evaluation recorded in a window, newest first, and a summary per
// trigger.
type Why struct {
	Service string `json:"service"`
	// Since and Until bound the window: evaluations recorded at or after
	// Since, up to Until (the time of the answer).
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Evaluations are newest first.
	Evaluations []WhyEvaluation `json:"evaluations"`
	Triggers    []WhyTrigger    `json:"triggers"`
	// Truncated is set when the window held more records than one answer
	// reads (MaxWhy): the oldest are left out; narrow --since.
	Truncated bool `json:"truncated,omitempty"`
	// Notes say what the node does not record as evaluations.
	Notes []string `json:"notes,omitempty"`
}

// MaxWhy bounds the evaluations one Why answer holds.
const MaxWhy = 10_000

// Why asks the node why service ran, or did not, since the given time.
func (c *Client) Why(ctx context.Context, service string, since time.Time) (Why, error) {
	path := "/v1/services/" + url.PathEscape(service) + "/why"
	if !since.IsZero() {
		path += "?" + url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}}.Encode()
	}
	var w Why
	return w, c.getJSON(ctx, path, &w)
}
