package store

import (
	"encoding/json"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/decision"
)

// The records below are what the store keeps, in JSON, in its buckets and
// streams. They are the store's own types, not the API's: a field the API
// adds (a computed health, a trigger's next time) does not end up on disk,
// and a record on disk keeps its shape when the wire changes. Their JSON
// names are the stored format (stateFormat): renaming one is a migration.

// Service is the registry record of one admitted service.
type Service struct {
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size_bytes"`
	Files       int               `json:"files"`
	Manifest    json.RawMessage   `json:"manifest"`
	Owner       string            `json:"owner"`
	SubmittedAt time.Time         `json:"submitted_at"`
	Target      string            `json:"target,omitempty"`
	Decision    decision.Decision `json:"decision"`
	Receipt     *attest.Receipt   `json:"receipt,omitempty"`
	// Forwarded is the receipt of the node that forwarded the service
	// here; nil for a service submitted here.
	Forwarded *attest.Receipt `json:"forwarded,omitempty"`
	// Attestations, Delegations and Origin are what the submission came
	// with, kept so that another node of a cluster taking the service over
	// judges it by its own policy as it was submitted. Absent in records
	// written before they were kept.
	Attestations []attest.Attestation `json:"attestations,omitempty"`
	Delegations  []attest.Delegation  `json:"delegations,omitempty"`
	Origin       decision.OriginClaim `json:"origin,omitzero"`
	// Status is "deployed", "dormant", "failed" (see StatusDetail) or
	// "stopped".
	Status       string `json:"status"`
	StatusDetail string `json:"status_detail,omitempty"`
	// Revision is the service's deployment revision: 1 for its first
	// submission, one more for each version submitted since and each
	// change of its config (andromeda config set). 0 in a record written
	// before revisions were kept.
	Revision int `json:"revision,omitempty"`
	// ConfigDigest is the digest of the config the revision runs with:
	// "sha256:" and the hex SHA-256 of its canonical JSON ({} for none).
	// The config itself is the manifest's config (Manifest), and each
	// revision's is kept in the artifact store under this digest.
	ConfigDigest string `json:"config_digest,omitempty"`
	// Revisions are the newest MaxRevisions revisions, oldest first, the
	// current one last.
	Revisions []Revision `json:"revisions,omitempty"`
	// Phase is the service's lifecycle phase (admitted, deployed,
	// started, stopped, failed); empty on records written before phases
	// existed, whose Status says it ("deployed" and "dormant" meant
	// started).
	Phase string `json:"phase,omitempty"`
}

// MaxRevisions bounds the revisions a service record keeps.
const MaxRevisions = 50

// Revision is one deployment revision of a service: a version submitted,
// or a config changed.
type Revision struct {
	Revision int `json:"revision"`
	// Change is "submit" (a version submitted, with the config its
	// manifest holds) or "config" (the config changed).
	Change       string `json:"change"`
	Version      string `json:"version"`
	Digest       string `json:"digest"`
	ConfigDigest string `json:"config_digest"`
	// Keys are the top-level config keys a config change set or removed,
	// sorted.
	Keys []string  `json:"keys,omitempty"`
	By   string    `json:"by"`
	At   time.Time `json:"at"`
	// Receipt is the signed decision that admitted a config change (a
	// submission's is the record's Receipt).
	Receipt *attest.Receipt `json:"receipt,omitempty"`
}

// Run is the record of one invocation, or of a firing that did not start.
type Run struct {
	ID      string           `json:"id"`
	Service string           `json:"service"`
	Version string           `json:"version"`
	Owner   string           `json:"owner,omitempty"`
	Trigger contract.Trigger `json:"trigger"`
	// Node is the node that ran it (or refused to): Config.Node when the
	// run is stored.
	Node      string           `json:"node,omitempty"`
	Start     time.Time        `json:"start"`
	Duration  time.Duration    `json:"duration_ns"`
	Outcome   string           `json:"outcome"`
	Output    *contract.Output `json:"output,omitempty"`
	Noop      string           `json:"noop_reason,omitempty"`
	Error     string           `json:"error,omitempty"`
	Usage     Usage            `json:"usage"`
	Attempts  int              `json:"attempts"`
	Truncated bool             `json:"truncated,omitempty"`
	Emitted   []Emitted        `json:"emitted,omitempty"`
	// Input is the message the run was given, kept when it is at most
	// MaxInputBytes; InputBytes is its size, kept or not.
	Input      json.RawMessage `json:"input,omitempty"`
	InputBytes int             `json:"input_bytes,omitempty"`
	// Digest and Driver are the code and the driver that ran it; set on
	// runs that reached a driver, which have a usage record (the node
	// signs it from this record when asked: package usage).
	Digest string `json:"digest,omitempty"`
	Driver string `json:"driver,omitempty"`
	// Revision is the service's deployment revision the run ran with
	// (Service.Revision): which config it was given. 0 for a run that
	// did not start, or one recorded before revisions were kept.
	Revision int `json:"revision,omitempty"`
}

// Emitted is what became of one of a run's emits to a bus topic: the
// event's sequence, or why it was not published.
type Emitted struct {
	Topic string `json:"topic"`
	Seq   uint64 `json:"seq,omitempty"`
	Error string `json:"error,omitempty"`
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

// TokenRecord is a stored API token; the hash of its secret is its key and
// the secret itself is never stored.
type TokenRecord struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
}

// RunQuery selects one page of a run listing. The zero value asks for the
// newest DefaultListRuns runs.
type RunQuery struct {
	// Limit is how many runs the page holds at most, 1 to MaxListRuns; 0
	// means DefaultListRuns.
	Limit int
	// Cursor is the Next of the previous page; "" starts at the newest run.
	Cursor string
	// Since keeps the runs that started at or after it; zero: no bound.
	Since time.Time
	// Until keeps the runs that started before it; zero: no bound.
	Until time.Time
}

// RunList is one page of a run listing, newest first.
type RunList struct {
	Runs []Run
	// Next is the cursor of the following page, "" on the last one.
	Next string
}

// MaxInputBytes is the largest input a run record keeps: a run's input is
// there to be read back by a person, and larger ones would crowd the
// record's output out of MaxRunBytes.
const MaxInputBytes = 16 << 10

// KeepInput records msg as the run's input when it fits MaxInputBytes,
// and its size in any case.
func (r *Run) KeepInput(msg json.RawMessage) {
	r.InputBytes = len(msg)
	if len(msg) <= MaxInputBytes {
		r.Input = msg
	}
}
