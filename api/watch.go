package api

import (
	"encoding/json"
	"time"
)

// Kinds of WatchEvent: what happened to a service or a run.
const (
	WatchAdmitted  = "service.admitted"  // a version was admitted and stored
	WatchDeployed  = "service.deployed"  // prepared: unpacked, dependencies installed, self-checked
	WatchStarted   = "service.started"   // triggers armed (and warm workers up in server mode)
	WatchStopped   = "service.stopped"   // triggers disarmed, runs in flight finished or killed
	WatchRemoved   = "service.removed"   // deleted from the registry
	WatchFailed    = "service.failed"    // a phase failed; Detail says why
	WatchProgress  = "service.progress"  // a step of a long deploy (dependency install, image pull); Detail says what and how far
	WatchUnhealthy = "service.unhealthy" // consecutive failures crossed the health threshold
	WatchHealthy   = "service.healthy"   // a run succeeded after the service was unhealthy
	WatchRunStart  = "run.started"       // a run began (after its slot was taken)
	WatchRunLog    = "run.log"           // a line a run wrote (stdout, stderr, protocol log)
	WatchRunEnd    = "run.finished"      // a run was recorded, with its outcome
)

// WatchEvent is one entry of the node's stream of what happens
// (GET /v1/watch). ID orders the stream and is what a client sends back
// as Last-Event-ID to resume after it.
type WatchEvent struct {
	ID      uint64    `json:"id,omitempty"`
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Service string    `json:"service"`
	Version string    `json:"version,omitempty"`
	Phase   string    `json:"phase,omitempty"` // the service's phase after the event
	Run     string    `json:"run,omitempty"`
	Trigger string    `json:"trigger,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	// Line is the text of a run.log event; Stream says where it came from
	// ("stdout", "stderr", "log").
	Line   string          `json:"line,omitempty"`
	Stream string          `json:"stream,omitempty"`
	Extra  json.RawMessage `json:"extra,omitempty"`
}

// WatchQuery selects the events of GET /v1/watch: those of Service (every
// service the caller may see when empty) stored after the event with id
// After (0: only events stored from now on).
type WatchQuery struct {
	Service string
	After   uint64
}

// LogQuery selects the lines of GET /v1/services/{name}/logs: those of
// Run (every run and the workers' own lines when empty) stored after the
// line with id After (0: from the oldest kept); Follow streams the lines
// stored later too.
type LogQuery struct {
	Run    string
	After  uint64
	Follow bool
}
