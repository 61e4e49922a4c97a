package api

import "github.com/andromeda-runner/andromeda/attest"

// Error is the body of every 4xx and 5xx answer: an RFC 9457 problem
// details object, sent as application/problem+json, with members of its own
// for what the error is about. The client returns it as the error of a
// call that was answered with one.
type Error struct {
	// Type is "about:blank": the status says what kind of problem it is.
	Type string `json:"type"`
	// Title is the status's text, e.g. "Not Found".
	Title  string `json:"title"`
	Status int    `json:"status"`
	// Message is the problem's detail: what went wrong, for a person.
	Message  string   `json:"detail"`
	Problems []string `json:"problems,omitempty"` // one line per field problem
	// Decision is the admission decision, when admission refused.
	Decision *Decision `json:"decision,omitempty"`
	// Receipt is that decision signed by the node, for a submission.
	Receipt *attest.Receipt `json:"receipt,omitempty"`
	// Run is the run the error is about, when one was made: a firing
	// skipped over the concurrency bound (429), or a run that ended but
	// that the store did not record (503).
	Run *Run `json:"run,omitempty"`
	// RetryAfter, in seconds, is sent as the Retry-After header when
	// positive.
	RetryAfter int `json:"-"`
}

// Error is the detail, then one problem a line.
func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return e.Message
	}
	s := e.Message
	for _, p := range e.Problems {
		s += "\n  " + p
	}
	return s
}
