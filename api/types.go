// Package api holds the HTTP API's wire types and the Client the CLI and
// tests use to talk to a node. It does not serve anything: handlers are in
// package server. It imports only the standard library and the leaves
// decision, contract and attest (a test at the repository root keeps it so),
// so a program that only talks to a node does not build the policy engine.
package api

import (
	"encoding/json"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/decision"
)

// Roles a token can have.
const (
	RoleOperator  = "operator"  // everything
	RoleSubmitter = "submitter" // submit, list, read own services and runs
	RoleRuntime   = "runtime"   // connect a browser runtime (/runtime/browser), nothing else
)

// Service is the registry record of one admitted (or refused) service.
type Service struct {
	Name string `json:"name"`
	// Node is the node of the cluster that runs it ("" for a node alone).
	Node        string          `json:"node,omitempty"`
	Version     string          `json:"version"`
	Digest      string          `json:"digest"`
	Size        int64           `json:"size_bytes"`
	Files       int             `json:"files"`
	Manifest    json.RawMessage `json:"manifest"`
	Owner       string          `json:"owner"`
	SubmittedAt time.Time       `json:"submitted_at"`
	Target      string          `json:"target,omitempty"`
	Decision    Decision        `json:"decision"`
	// Receipt is the decision signed by the node key, with the policy's
	// digest: proof of what rules admitted what code.
	Receipt *attest.Receipt `json:"receipt,omitempty"`
	// Forwarded is the receipt of the node that forwarded the service
	// here (its decision to forward, with the path it came through and who
	// submitted it first); nil for a service submitted here.
	Forwarded *attest.Receipt `json:"forwarded,omitempty"`
	// Phase is where the service is in its lifecycle: PhaseAdmitted,
	// PhaseDeployed, PhaseStarted, PhaseStopping, PhaseStopped or
	// PhaseFailed (see StatusDetail).
	Phase string `json:"phase"`
	// Status is the older, coarser word: "deployed" (deployed or
	// started), "dormant" (started, deployed on its first trigger),
	// "stopped", "failed" or "admitted". Phase says which.
	Status       string        `json:"status"`
	StatusDetail string        `json:"status_detail,omitempty"`
	Health       *Health       `json:"health,omitempty"`
	Triggers     []TriggerInfo `json:"triggers,omitempty"`
	// Revision is the deployment revision: 1 for the first submission,
	// one more for each version submitted and each config change since
	// (see ServiceConfig).
	Revision int `json:"revision,omitempty"`
	// ConfigDigest is the digest of the config the revision runs with.
	ConfigDigest string `json:"config_digest,omitempty"`
	// Placement is where a service deployed in containers (the docker
	// driver) runs, and why; nil for other drivers and for a service not
	// deployed.
	Placement *Placement `json:"placement,omitempty"`
}

// Decision is the admission decision for a service, with its reasons in the
// order the rules looked at it (see packages decision and policy).
type Decision = decision.Decision

// Reason is one admission rule's finding.
type Reason = decision.Reason

// Limits are the resource ceilings a deployment runs under.
type Limits = decision.Limits

// Health is a service's health as the node sees it.
type Health struct {
	Healthy             bool      `json:"healthy"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastError           string    `json:"last_error,omitempty"`
	SkipUntil           time.Time `json:"skip_until,omitzero"`
}

// TriggerInfo describes one trigger of a deployed service.
type TriggerInfo struct {
	Name string    `json:"name"` // triggers[i]
	Kind string    `json:"kind"`
	Spec string    `json:"spec"` // "every 30s", "*/5 * * * * *", "manual", ...
	Next time.Time `json:"next,omitzero"`
}

// Run is the record of one invocation (or of a firing that did not start).
type Run struct {
	ID      string           `json:"id"`
	Service string           `json:"service"`
	Version string           `json:"version"`
	Owner   string           `json:"owner,omitempty"`
	Trigger contract.Trigger `json:"trigger"`
	// Node is the node that ran it.
	Node     string        `json:"node,omitempty"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	// Outcome is ok, noop, error, timeout, crashed, oom, rejected, skipped
	// or cancelled (killed while it ran; Error names who killed it).
	Outcome string `json:"outcome"`
	// Output holds the actions, emits and state change the service returned.
	// The actions of an ok run are executed by the node: see Executions.
	Output    *contract.Output `json:"output,omitempty"`
	Noop      string           `json:"noop_reason,omitempty"`
	Error     string           `json:"error,omitempty"`
	Usage     Usage            `json:"usage"`
	Attempts  int              `json:"attempts"`            // invocations it took: more than 1 when its state write conflicted (state.attempts)
	Truncated bool             `json:"truncated,omitempty"` // output (and input) dropped to keep the record bounded
	// Input is the message the run was given (a fire's message, an
	// event's, a webhook's request as the service saw it), kept when it
	// is at most 16 KiB; InputBytes is its size, kept or not.
	Input      json.RawMessage `json:"input,omitempty"`
	InputBytes int             `json:"input_bytes,omitempty"`
	// Emitted says what became of each emit to a bus topic, in order.
	Emitted []Emitted `json:"emitted,omitempty"`
	// Executions are what became of the run's actions, in order: one per
	// action, except that all submit actions make one signed envelope. Set
	// when one run is asked for (GET /v1/services/{name}/runs/{id}) and on
	// a planned fire.
	Executions []Execution `json:"executions,omitempty"`
	// Revision is the service's deployment revision the run ran with:
	// which config it was given (see ServiceConfig).
	Revision int `json:"revision,omitempty"`
	// Plan is set on the answer to a planned fire (fire --plan): nothing
	// of the run took effect; Executions say what would have been sent.
	Plan bool `json:"plan,omitempty"`
	// UsageRecord is the run's usage signed by the node key, a sealed
	// body that `andromeda usage verify` (package usage's Verify) checks
	// against the node's key (GET /v1/node, node_key); set on runs that
	// reached a driver, when one run is asked for (GET
	// /v1/services/{name}/runs/{id}); GET /v1/usage lists them.
	UsageRecord json.RawMessage `json:"usage_record,omitempty"`
}

// Execution is one execution of a run's actions, from the node's ledger.
type Execution struct {
	// Key is the idempotency key, sent to HTTP endpoints as
	// Idempotency-Key on every attempt.
	Key string `json:"key"`
	// Actions are the indexes of the run's actions it executes.
	Actions []int  `json:"actions"`
	Kind    string `json:"kind"`
	Target  string `json:"target,omitempty"`
	// Digest is sha256 of the canonical params, or of the envelope.
	Digest string `json:"digest"`
	// State is planned, sent, retry, confirmed or failed.
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
	// Status and Response are the endpoint's last answer (HTTP kinds);
	// Sequence is the event's (emit, publish, registered kinds).
	Status    int       `json:"status,omitempty"`
	Response  string    `json:"response,omitempty"`
	Sequence  uint64    `json:"sequence,omitempty"`
	Endpoint  string    `json:"endpoint,omitempty"`
	Envelope  string    `json:"envelope,omitempty"` // submit: the signed envelope sent (or, on a plan, that would be)
	Updated   time.Time `json:"updated"`
	NextRetry time.Time `json:"next_retry,omitzero"`
}

// Usage is what a run consumed; zero fields were not measured.
type Usage struct {
	WallNS     int64 `json:"wall_ns"`
	CPUNS      int64 `json:"cpu_ns,omitempty"`
	PeakMemory int64 `json:"peak_memory_bytes,omitempty"`
	// MemoryScope says whose peak PeakMemory is: "run" (an instance or
	// worker that served this run alone) or "worker" (a warm one shared
	// with other runs: its peak since it started).
	MemoryScope string `json:"memory_scope,omitempty"`
	// StartNS is how long the run waited for a fresh instance or worker
	// to start (its cold start, part of WallNS); absent on a warm or
	// prewarmed one and where the driver does not measure it.
	StartNS int64 `json:"start_ns,omitempty"`
	// Counters are the sums of the custom counters the service reported
	// (a usage message, ctx.usage, andromeda.usage); CountersDropped the
	// reports refused for a bad name or value or past 32 names.
	Counters        map[string]float64 `json:"counters,omitempty"`
	CountersDropped int                `json:"counters_dropped,omitempty"`
	// NetworkRx and NetworkTx are the bytes the guest received and sent
	// over the network, where its driver measures them (docker); absent
	// when not measured, as in records written before they existed.
	NetworkRx int64 `json:"network_rx_bytes,omitempty"`
	NetworkTx int64 `json:"network_tx_bytes,omitempty"`
}

// SubmitResult answers POST /v1/services.
type SubmitResult struct {
	Service Service `json:"service"`
	// Unchanged is true when the same name, version and digest was already
	// deployed; nothing was redeployed.
	Unchanged bool `json:"unchanged"`
	// Forward is set when this node's policy forwarded the service to a
	// peer that runs it: Service is then the peer's answer.
	Forward *Forward `json:"forward,omitempty"`
}

// FireRequest is the body of POST /v1/services/{name}/fire.
type FireRequest struct {
	Message json.RawMessage `json:"message,omitempty"`
	// Plan runs the service and answers with what it would execute (its
	// executions, the signed envelope and its digest included), executing
	// nothing, writing no state and recording no run.
	Plan bool `json:"plan,omitempty"`
	// Args is the run's argument vector, input.args (andromeda run NAME
	// -- ARG...): at most 4096 strings, 128 KiB in all, without NUL.
	Args []string `json:"args,omitempty"`
	// Detach answers 202 as soon as the run has started, with its id
	// (a RunInFlight); the run goes on. See GET /v1/runs/{id}/wait.
	Detach bool `json:"detach,omitempty"`
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Token answers POST /v1/tokens. The secret is shown once.
type Token struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Secret  string    `json:"token,omitempty"`
	Created time.Time `json:"created"`
}

// SubmitOptions travel beside a submitted archive, in headers.
type SubmitOptions struct {
	// Attestations sign the archive's digest (attest.HeaderName).
	Attestations []attest.Attestation
	// Delegations place the attestations' signers in the trust tree below
	// the node's trusted hubs (attest.DelegationsHeaderName).
	Delegations []attest.Delegation
	// Origin is where the submission says it comes from
	// (decision.OriginHeader); zero for none.
	Origin decision.OriginClaim
	// NoStart admits and deploys without starting (?start=false): the
	// service waits in PhaseDeployed for POST .../start.
	NoStart bool
	// Notes are reasons the node puts before admission's own in the
	// decision: what it did to the submission on the way in (the seed
	// object's translation to a manifest). Set by the node itself, never
	// from a request's headers.
	Notes []decision.Reason
	// Forwarded is the signed receipt of the node that forwarded the
	// submission here (attest.ForwardHeaderName): its decision to forward,
	// naming this node, the path and the redirect depth left. Nil for a
	// submission made here.
	Forwarded *attest.Receipt
	// PlacedBy is the node of the cluster that placed the submission here
	// (it was made there and placement chose this node). Set by the node
	// itself, never from a request's headers.
	PlacedBy string
}

// Forward is one service a node forwarded to a peer (GET /v1/forwards):
// where, why, and what the peer answered.
type Forward struct {
	At time.Time `json:"at"`
	// Kind is forward (a service this node did not run) or advertise (one
	// it runs, offered to the peer, which may run it too).
	Kind    string `json:"kind"`
	Service string `json:"service"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
	// Submitter is who submitted it to the first node of Path.
	Submitter string `json:"submitter"`
	// Path is the nodes it came through before this one, oldest first.
	Path []string `json:"path,omitempty"`
	// Peer is the peer that answered (or the last one tried).
	Peer string `json:"peer"`
	// Outcome is run (the peer, or one it forwarded to, runs it),
	// rejected (the peer's policy refused it, or it could go nowhere),
	// or unreachable (no peer answered).
	Outcome string `json:"outcome"`
	// Detail says what the peer answered, or why no peer did.
	Detail string `json:"detail,omitempty"`
	// Skipped are the peers passed over on the way, each with why.
	Skipped []string `json:"skipped,omitempty"`
	// Receipt is this node's signed decision to forward to Peer.
	Receipt *attest.Receipt `json:"receipt,omitempty"`
	// PeerReceipt is the signed decision the answer carried: the node
	// that runs the service, or that refused it.
	PeerReceipt *attest.Receipt `json:"peer_receipt,omitempty"`
}

// Forward kinds and outcomes.
const (
	KindForward   = "forward"
	KindAdvertise = "advertise"

	ForwardRun         = "run"
	ForwardRejected    = "rejected"
	ForwardUnreachable = "unreachable"
)

// NodeInfo answers GET /v1/node.
type NodeInfo struct {
	Version  string         `json:"version"`
	Started  time.Time      `json:"started"`
	Data     string         `json:"data_dir"`
	Bus      string         `json:"bus"`
	Drivers  []DriverStatus `json:"drivers"`
	Services int            `json:"services"`
	// NodeKey is the node key's public half, "ed25519:<base64>": it signs
	// admission receipts and usage records, and is the node's id in them.
	NodeKey string `json:"node_key,omitempty"`
	// Caller is who asked: the token's name and role (the dashboard shows
	// an operator's actions, and only those).
	Caller *Caller `json:"caller,omitempty"`
}

// Caller is the token a request came with, as GET /v1/node names it.
type Caller struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// DriverStatus is a driver's self-test result and offer.
type DriverStatus struct {
	Name    string          `json:"name"`
	Enabled bool            `json:"enabled"`
	Reason  string          `json:"reason,omitempty"`
	Offer   json.RawMessage `json:"offer,omitempty"`
}

// Dep is one package in a process service's own dependency directory.
type Dep struct {
	Language string `json:"language"` // node | python
	Name     string `json:"name"`
	Version  string `json:"version"`
	// Added is true for packages added with `andromeda deps add`, false for
	// those from the service's package.json or requirements.txt (and their
	// dependencies).
	Added bool `json:"added"`
}

// DepRequest is the body of POST /v1/services/{name}/deps.
type DepRequest struct {
	Package string `json:"package"`
}

// RunQuery selects one page of a run listing (GET /v1/runs and
// /v1/services/{name}/runs, query parameters limit, cursor, since, until).
// The zero value asks for the newest 20 runs.
type RunQuery struct {
	// Limit is how many runs one page holds at most, 1 to 1000; 0 means 20.
	Limit int
	// Cursor is the Next of the previous page; "" starts at the newest run.
	// It is opaque: pass it back as it came.
	Cursor string
	// Since keeps the runs that started at or after it; zero: no bound.
	Since time.Time
	// Until keeps the runs that started before it; zero: no bound.
	Until time.Time
}

// RunList is one page of a run listing, newest first (in the order the
// runs were recorded).
type RunList struct {
	Runs []Run `json:"runs"`
	// Next is the cursor of the following page, absent on the last one. A
	// page may hold fewer than the limit, even none, and still have a Next
	// (a time window skipped many records); a client follows Next until it
	// is absent.
	Next string `json:"next,omitempty"`
}

// Readiness is the answer of GET /readyz: 200 when ready, 503 with the
// reason when not. Store says what the store found at start, per stream
// (records, sequences, deleted, lost, salvaged); Problems lists damage it
// found or repaired, in words.
type Readiness struct {
	Ready    bool            `json:"ready"`
	Reason   string          `json:"reason,omitempty"`
	Store    json.RawMessage `json:"store,omitempty"`
	Problems []string        `json:"problems,omitempty"`
	// Postgres lists the events.postgres bridges; one that is
	// reconnecting does not make the node unready.
	Postgres []PostgresBridge `json:"postgres,omitempty"`
}

// PostgresBridge is one PostgreSQL notification channel bridged to a
// topic (events.postgres), as /readyz shows it.
type PostgresBridge struct {
	Channel string `json:"channel"`
	Topic   string `json:"topic"`
	// Server is the DSN with its password replaced by xxxxx.
	Server string `json:"server"`
	// State is connecting, listening, reconnecting or stopped; Since when
	// it began.
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// LastError is the last connection error, kept after the connection
	// is back; PublishError the last error publishing, cleared by a
	// publish that succeeds.
	LastError    string `json:"last_error,omitempty"`
	PublishError string `json:"publish_error,omitempty"`
	// Reconnects counts the times it listened again after losing its
	// connection; Received the notifications received, Published those
	// published, Rejected those the bus refused for good, Pending those
	// received and not yet published.
	Reconnects uint64 `json:"reconnects"`
	Received   uint64 `json:"received"`
	Published  uint64 `json:"published"`
	Rejected   uint64 `json:"rejected"`
	Pending    int    `json:"pending"`
}
