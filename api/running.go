package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
)

// Statuses of a RunInFlight.
const (
	RunRunning    = "running"    // the run took its slot and has not been recorded yet
	RunCancelling = "cancelling" // someone asked to kill it; it has not been recorded yet
)

// RunInFlight is a run that started and has not been recorded yet
// (GET /v1/runs?status=running, a detached fire's answer).
type RunInFlight struct {
	ID      string           `json:"id"`
	Service string           `json:"service"`
	Version string           `json:"version"`
	Owner   string           `json:"owner,omitempty"`
	Trigger contract.Trigger `json:"trigger"`
	Start   time.Time        `json:"start"`
	// Status is running or cancelling.
	Status string `json:"status"`
	// CancelledBy names who asked to kill the run, and CancelledAt when.
	CancelledBy string    `json:"cancelled_by,omitempty"`
	CancelledAt time.Time `json:"cancelled_at,omitzero"`
}

// RunningList answers GET /v1/runs?status=running: the runs in flight,
// oldest first.
type RunningList struct {
	Runs []RunInFlight `json:"runs"`
}

// CancelResult answers POST /v1/runs/{id}/cancel. When the run was
// recorded cancelled within the node's wait (status 200), Recorded is the
// record and RecordedAt when it was stored; otherwise (status 202) the
// kill is under way and Run says so.
type CancelResult struct {
	Run        RunInFlight `json:"run"`
	Recorded   *Run        `json:"recorded,omitempty"`
	RecordedAt time.Time   `json:"recorded_at,omitzero"`
}

// WaitResult answers GET /v1/runs/{id}/wait: the run once recorded
// (status 200, Run), or still in flight when the wait ended (status 202,
// InFlight).
type WaitResult struct {
	Run      *Run         `json:"run,omitempty"`
	InFlight *RunInFlight `json:"in_flight,omitempty"`
}

// FireWith runs a service now with req's message and argument vector
// and waits for the run (operator). req.Detach is ignored: see
// FireDetached.
func (c *Client) FireWith(ctx context.Context, name string, req FireRequest) (Run, error) {
	req.Detach = false
	var r Run
	return r, c.postJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/fire", req, &r)
}

// FireDetached starts a run of a service and answers as soon as it has
// started, with its id (operator). A run that ended before the answer
// comes back recorded, as finished.
func (c *Client) FireDetached(ctx context.Context, name string, req FireRequest) (started RunInFlight, finished *Run, err error) {
	req.Detach = true
	var raw json.RawMessage
	if err := c.postJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/fire", req, &raw); err != nil {
		return RunInFlight{}, nil, err
	}
	// A run in flight has a status; a recorded one an outcome.
	var probe struct {
		Status  string `json:"status"`
		Outcome string `json:"outcome"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return RunInFlight{}, nil, err
	}
	if probe.Outcome != "" {
		var r Run
		return RunInFlight{}, &r, json.Unmarshal(raw, &r)
	}
	return started, nil, json.Unmarshal(raw, &started)
}

// Running lists the runs in flight, oldest first; service "" means all
// the caller may see.
func (c *Client) Running(ctx context.Context, service string) ([]RunInFlight, error) {
	v := url.Values{"status": {RunRunning}}
	if service != "" {
		v.Set("service", service)
	}
	var r RunningList
	return r.Runs, c.getJSON(ctx, "/v1/runs?"+v.Encode(), &r)
}

// Cancel kills a run in flight and waits, for a bounded time, until it is
// recorded cancelled. A finished run is an *Error with Status 409 naming
// its outcome; an unknown one 404.
func (c *Client) Cancel(ctx context.Context, id string) (CancelResult, error) {
	var r CancelResult
	return r, c.postJSON(ctx, "/v1/runs/"+url.PathEscape(id)+"/cancel", struct{}{}, &r)
}

// WaitRun waits up to timeout (at most one minute, the node's bound: a
// longer one is asked as one minute) for the run with id to be recorded:
// done says it was, and run is its record; otherwise inFlight is the run
// as it goes on.
func (c *Client) WaitRun(ctx context.Context, id string, timeout time.Duration) (run Run, inFlight RunInFlight, done bool, err error) {
	timeout = min(max(timeout, 0), time.Minute)
	var r WaitResult
	path := "/v1/runs/" + url.PathEscape(id) + "/wait?timeout=" + strconv.FormatInt(timeout.Milliseconds(), 10) + "ms"
	if err := c.do(ctx, http.MethodGet, path, "", nil, &r); err != nil {
		return Run{}, RunInFlight{}, false, err
	}
	if r.Run != nil {
		return *r.Run, RunInFlight{}, true, nil
	}
	if r.InFlight != nil {
		inFlight = *r.InFlight
	}
	return Run{}, inFlight, false, nil
}
