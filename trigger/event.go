// Package trigger holds what makes a service run: the one Event type every
// trigger source produces (cron, manual, event, http), the Spec of a trigger
// as the node hands it over, and the Scheduler that fires time-based (cron)
// triggers (docs/design.md section 6). Whether a tick of an unhealthy
// service is skipped is package health's to say.
//
// It does not run services, bound their concurrency, subscribe to the bus or
// serve HTTP: the node owns the fire path and the event and http sources;
// this package only decides when time-based triggers fire. It imports the
// standard library, github.com/netresearch/go-cron (the cron expression
// parser) and package contract (what a flow trigger carries) only.
package trigger

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
)

// Trigger kinds, as manifests spell them.
const (
	KindCron   = "cron"   // a fixed interval (Every) or a cron expression (Schedule)
	KindManual = "manual" // andromeda fire NAME, or the API
	KindEvent  = "event"  // a bus topic
	KindHTTP   = "http"   // a webhook path; the run's output is the response
	KindFlow   = "flow"   // a message to a module of a running flow
)

var (
	// ErrInvalidSpec is wrapped by every error Scheduler.Set returns for a
	// spec it cannot schedule; the message names the field (triggers[i].schedule).
	ErrInvalidSpec = errors.New("invalid trigger spec")
)

// Event is one firing of one trigger of one service; every trigger source
// produces it and the node turns it into a run. Events are values: the
// producer does not touch one after handing it over.
type Event struct {
	// Service is the name of the service to run.
	Service string
	// Trigger names the trigger in the manifest: "triggers[0]".
	Trigger string
	// Kind is KindCron, KindManual, KindEvent or KindHTTP.
	Kind string
	// At is when the trigger fired. For cron triggers it is the scheduled
	// tick time, not the moment of delivery, so every node of a cluster
	// computes the same At for the same tick of a cron expression (and of an
	// interval with a shared Spec.Anchor) and the tick can be deduplicated
	// on (Service, Trigger, At).
	At time.Time
	// Topic is the bus topic that fired an event trigger; empty otherwise.
	Topic string
	// Seq is the event's sequence in the events stream (event triggers).
	Seq uint64
	// Publisher names who published the event (event triggers): a token's
	// name, or "service:NAME" for a run's emit; empty when unknown.
	Publisher string
	// Method and Path are the request's method and webhook path (http
	// triggers); empty otherwise.
	Method, Path string
	// Message is the invocation's message: the trigger's configured message
	// for cron triggers, the payload for the other kinds. May be nil.
	Message json.RawMessage
	// Args is the argument vector of a manual run (andromeda run NAME --
	// ARG...); nil otherwise.
	Args []string
	// RunID, when set, is the id the run takes: a caller that must know
	// it before the run starts (fire --detach) makes it with the node.
	RunID string
	// Flow is set on a module run of a flow (KindFlow): which flow run,
	// module and message.
	Flow *contract.FlowInfo
	// Config, when set, is laid over the service's config for this run
	// (a flow module's config).
	Config map[string]any
	// FlowContext is the flow's context a module run reads (KindFlow).
	FlowContext map[string]json.RawMessage
}

// Spec is one trigger of a service as the node hands it to a trigger source,
// converted from the manifest. Only KindCron specs are scheduled by the
// Scheduler; the other kinds are accepted by Scheduler.Set and ignored, so the
// node can pass a service's whole trigger list and the indexes stay those of
// the manifest.
type Spec struct {
	// Kind is KindCron, KindManual, KindEvent or KindHTTP.
	Kind string
	// Every is the interval of a cron trigger that fires at fixed intervals.
	// Exactly one of Every and Schedule is set on a cron trigger. There is no
	// minimum here: admission policy decides what intervals are allowed.
	Every time.Duration
	// Schedule is a cron expression with seconds, six fields: second minute
	// hour day-of-month month day-of-week ("*/5 * * * * *"), with an optional
	// "CRON_TZ=Zone " prefix; or a descriptor: @yearly, @monthly, @weekly,
	// @daily, @hourly, or "@every 30s" (which behaves exactly like Every).
	// When both day-of-month and day-of-week are restricted, a day matching
	// either fires, as in crontab(5).
	Schedule string
	// Anchor aligns an interval trigger: it fires at Anchor + k×Every for
	// k ≥ 1. Zero (the default) means the time the spec was first Set. A
	// cluster passes the same Anchor (the deploy time, say) on every node so
	// that all nodes agree on the ticks. Ignored for cron expressions.
	Anchor time.Time
	// Topic is the bus topic of an event trigger. Ignored by the Scheduler.
	Topic string
	// Path is the webhook path of an http trigger. Ignored by the Scheduler.
	Path string
	// Message is the message a cron trigger passes to each run. Treated as
	// read-only; each Event gets its own copy.
	Message json.RawMessage
	// Lead asks for a prewarm of each tick of a cron trigger: the
	// Scheduler's Config.Prewarm is called Lead before the tick (at once,
	// right after the previous tick, when Lead is not shorter than the
	// interval). Zero, or no Config.Prewarm: none.
	Lead time.Duration
}

// String describes the spec in a few words for listings: "every 30s",
// "*/5 * * * * *", "manual", "event orders.created", "http /hook".
func (s Spec) String() string {
	switch s.Kind {
	case KindCron:
		if s.Schedule != "" {
			return s.Schedule
		}
		return "every " + s.Every.String()
	case KindEvent:
		return strings.TrimSpace("event " + s.Topic)
	case KindHTTP:
		return strings.TrimSpace("http " + s.Path)
	default:
		return s.Kind
	}
}

// Name is the name of the trigger at index i of a manifest: "triggers[i]".
func Name(i int) string {
	return fmt.Sprintf("triggers[%d]", i)
}
