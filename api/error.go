package api

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Status   int      `json:"status"`
	Message  string   `json:"error"`
	Problems []string `json:"problems,omitempty"` // one line per field problem
	// Decision is the admission decision, when admission refused.
	Decision *Decision `json:"decision,omitempty"`
	// Run is the run the error is about, when one was made: a firing
	// skipped over the concurrency bound (429), or a run that ended but
	// that the store did not record (503).
	Run *Run `json:"run,omitempty"`
	// RetryAfter, in seconds, is sent as the Retry-After header when
	// positive.
	RetryAfter int `json:"-"`
}

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
