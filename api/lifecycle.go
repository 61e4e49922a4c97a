package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Phases of a service (Service.Phase), in the order an operator drives
// them: admitted (stored, not prepared) → deployed (prepared: unpacked,
// dependencies installed, the driver's deployment made and checked) →
// started (triggers armed; a server-mode service's warm workers up) →
// stopped (triggers disarmed, the deployment released; files, state and
// runs kept) → removed (gone from the registry; runs kept unless purged).
// A phase that failed is PhaseFailed, with the reason in StatusDetail.
const (
	PhaseAdmitted = "admitted"
	PhaseDeployed = "deployed"
	PhaseStarted  = "started"
	PhaseStopping = "stopping" // only while a stop waits for runs in flight
	PhaseStopped  = "stopped"
	PhaseFailed   = "failed"
	PhaseRemoved  = "removed" // only in watch events: a removed service has no record
)

// Start modes of a deployment (DeployResult.StartMode), as the Golem
// runtime API names them.
const (
	// StartBlocking: the service keeps warm workers (mode: server).
	StartBlocking = "blocking"
	// StartEmpty: each run starts a fresh instance (mode: command).
	StartEmpty = "empty"
)

// DeployResult answers POST /v1/services/{name}/deploy, in the shape of
// the Golem runtime API's deploy output.
type DeployResult struct {
	// StartMode is StartBlocking or StartEmpty.
	StartMode string `json:"start_mode"`
	// Valid is {"ok": ...} when the deployment was made and checked, or
	// {"err": "message"} when it was not (the service is then failed).
	Valid DeployValid `json:"valid"`
	// Volumes are the service's declared volumes with what they hold; an
	// empty list when it declares none.
	Volumes []Volume `json:"volumes"`
	// Service is the service after the step, with its phase.
	Service Service `json:"service"`
}

// DeployValid is a deploy's verdict: exactly one of Ok and Err is set.
type DeployValid struct {
	Ok  *DeployOK `json:"ok,omitempty"`
	Err *string   `json:"err,omitempty"`
}

// DeployOK says what was checked at deploy.
type DeployOK struct {
	Driver  string `json:"driver"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

// StopRequest is the optional body of POST /v1/services/{name}/stop.
type StopRequest struct {
	// Grace is how long runs in flight may take to finish before they are
	// killed, as a Go duration ("5s"); "" takes the node's
	// lifecycle.stop_grace.
	Grace string `json:"grace,omitempty"`
}

// Deploy prepares a service (POST /v1/services/{name}/deploy): from
// admitted, stopped or failed to deployed, without starting it.
func (c *Client) Deploy(ctx context.Context, name string) (DeployResult, error) {
	var r DeployResult
	return r, c.postJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/deploy", struct{}{}, &r)
}

// Start arms a service's triggers (POST /v1/services/{name}/start),
// deploying it first when it has no deployment (admitted, stopped).
func (c *Client) Start(ctx context.Context, name string) (Service, error) {
	var r Service
	return r, c.postJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/start", struct{}{}, &r)
}

// Stop disarms a service's triggers, gives its runs in flight grace (0:
// the node's default) and then kills them, and releases its deployment
// (POST /v1/services/{name}/stop). It answers once the service is
// stopped and its runs are recorded.
func (c *Client) Stop(ctx context.Context, name string, grace time.Duration) (Service, error) {
	var req StopRequest
	if grace > 0 {
		req.Grace = grace.String()
	}
	var r Service
	return r, c.postJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/stop", req, &r)
}

// RemoveWith stops and deletes a service (operator); purge also deletes
// its run history, which otherwise stays for the runs' retention.
func (c *Client) RemoveWith(ctx context.Context, name string, purge bool) error {
	path := "/v1/services/" + url.PathEscape(name)
	if purge {
		path += "?purge=true"
	}
	return c.do(ctx, http.MethodDelete, path, "", nil, nil)
}
