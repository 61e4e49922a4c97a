package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// Bounds of the flows bucket.
const (
	// MaxFlowBytes bounds one flow record: the document (at most 1 MiB as
	// its author wrote it, JSON here) and what the node adds.
	MaxFlowBytes = 2 << 20
	// MaxFlowsBytes caps the flows bucket: thousands of flows of a few
	// KiB. Its reservation counts against JetStream's storage
	// (bus.DefaultMaxStore), which the runs and events streams mostly hold.
	MaxFlowsBytes = 32 << 20
)

// FlowRecord is a flow as the node keeps it: the document as applied (in
// JSON), its digest, its owner, and when it was applied.
type FlowRecord struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	// Owner is the principal that applied it: "operator" or a submitter's
	// token name.
	Owner string `json:"owner"`
	// Digest is "sha256:" and the hex of the canonical JSON of Flow.
	Digest  string    `json:"digest"`
	Applied time.Time `json:"applied"`
	// Flow is the flow document, JSON.
	Flow json.RawMessage `json:"flow"`
	// Running says the flow was started (and not stopped): the node runs
	// it, again after a restart.
	Running bool `json:"running,omitempty"`
	// Breakpoints are the modules a breakpoint holds messages at (the
	// runner API's setBreakPointAtModule), sorted.
	Breakpoints []string `json:"breakpoints,omitempty"`
	// Node is, in a cluster, the node that runs the flow while it is
	// running: the one it was started on, or the one that took it over.
	// Empty on a node alone, and while no node holds it (its node was
	// drained).
	Node string `json:"node,omitempty"`
	// Revision is the record's revision in the bucket: PutFlow's
	// compare-and-set takes it. Not stored.
	Revision uint64 `json:"-"`
}

// createFlows creates or updates the flows bucket.
func (s *Store) createFlows(ctx context.Context) error {
	var err error
	s.flows, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketFlows, Description: "andromeda flows: flow id → the flow as applied",
		History: 1, Storage: jetstream.FileStorage, Replicas: s.cfg.Replicas,
		MaxBytes: MaxFlowsBytes, MaxValueSize: MaxFlowBytes,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", bus.BucketFlows, err)
	}
	if s.flowStream, err = s.js.Stream(ctx, kvStream(bus.BucketFlows)); err != nil {
		return fmt.Errorf("store: bucket %s: %w", bus.BucketFlows, err)
	}
	s.flowContext, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketFlowContext, Description: "andromeda flow contexts: flow id → the context its modules read and write",
		History: 1, Storage: jetstream.FileStorage, Replicas: s.cfg.Replicas, MaxValueSize: MaxFlowContext + 64<<10,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", bus.BucketFlowContext, err)
	}
	return nil
}

func decodeFlow(b []byte) (FlowRecord, error) {
	var r FlowRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.ID == "" || len(r.Flow) == 0 {
		return r, errors.New("no flow id or document")
	}
	return r, nil
}

// PutFlow stores r if the flow's record is still at revision (0: there is
// none) and returns the new revision. A record written meanwhile fails it
// with ErrConflict; a bucket with no room left with ErrFull.
func (s *Store) PutFlow(ctx context.Context, r FlowRecord, revision uint64) (uint64, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	b, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("store: encode flow %s: %w", r.ID, err)
	}
	var rev uint64
	if revision == 0 {
		rev, err = s.flows.Create(ctx, r.ID, b)
	} else {
		rev, err = s.flows.Update(ctx, r.ID, b, revision)
	}
	switch {
	case err == nil:
		return rev, nil
	case casLost(err):
		return 0, fmt.Errorf("store: flow %s changed meanwhile: %w", r.ID, ErrConflict)
	case errors.Is(err, jetstream.ErrMaxBytesExceeded) || strings.Contains(err.Error(), "maximum bytes"):
		return 0, fmt.Errorf("store: put flow %s: %w (at most %d bytes of flows)", r.ID, ErrFull, MaxFlowsBytes)
	}
	return 0, s.deadline(ctx, fmt.Errorf("store: put flow %s: %w", r.ID, err))
}

// casLost says a KV create or update lost its compare-and-set: the key
// exists already, or is at another revision than the one given.
func casLost(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Flow returns the record of flow id, or an error wrapping ErrNotFound.
func (s *Store) Flow(ctx context.Context, id string) (FlowRecord, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	e, err := s.flows.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// A replica answers a get: in a cluster it may not have applied a
		// flow applied a moment ago. The leader says.
		return s.FlowAtLeader(ctx, id)
	case err != nil:
		return FlowRecord{}, s.deadline(ctx, fmt.Errorf("store: flow %s: %w", id, err))
	}
	r, err := decodeFlow(e.Value())
	if err != nil {
		return FlowRecord{}, fmt.Errorf("store: flow %s does not decode: %w", id, ErrDamaged)
	}
	r.Revision = e.Revision()
	return r, nil
}

// FlowAtLeader is flow id's record as the flows bucket's leader has it:
// what a node of a cluster reads before it stops running a flow it was
// told has moved, since a replica's answer may lag behind.
func (s *Store) FlowAtLeader(ctx context.Context, id string) (FlowRecord, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	m, err := leaderLastMsg(ctx, s.js, kvStream(bus.BucketFlows), "$KV."+bus.BucketFlows+"."+id)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return FlowRecord{}, fmt.Errorf("store: flow %s: %w", id, ErrNotFound)
	case err != nil:
		return FlowRecord{}, s.deadline(ctx, fmt.Errorf("store: flow %s at the leader: %w", id, err))
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return FlowRecord{}, fmt.Errorf("store: flow %s: %w", id, ErrNotFound)
	}
	r, err := decodeFlow(m.Data)
	if err != nil {
		return FlowRecord{}, fmt.Errorf("store: flow %s does not decode: %w", id, ErrDamaged)
	}
	r.Revision = m.Sequence
	return r, nil
}

// Flows returns every flow record, sorted by id, each with its revision. A record that cannot be
// read or decoded fails the listing with ErrDamaged unless the store was
// opened with Repair: then it is skipped.
func (s *Store) Flows(ctx context.Context) ([]FlowRecord, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	vals, unreadable, err := kvValues(ctx, s.js, s.flowStream)
	if err != nil {
		return nil, s.deadline(ctx, fmt.Errorf("store: list flows: %w", err))
	}
	if len(unreadable) > 0 && !s.cfg.Repair {
		return nil, fmt.Errorf("store: list flows: record(s) of %s unreadable: %w", strings.Join(unreadable, ", "), ErrDamaged)
	}
	out := make([]FlowRecord, 0, len(vals))
	for _, v := range vals {
		if v.deleted {
			continue
		}
		r, err := decodeFlow(v.value)
		if err != nil {
			if s.cfg.Repair {
				continue
			}
			return nil, fmt.Errorf("store: flow %s does not decode: %w", v.key, ErrDamaged)
		}
		r.Revision = v.seq
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RemoveFlow deletes flow id's record if it is still at revision; an
// error wraps ErrNotFound when there is none, ErrConflict when it changed
// meanwhile.
func (s *Store) RemoveFlow(ctx context.Context, id string, revision uint64) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	err := s.flows.Delete(ctx, id, jetstream.LastRevision(revision))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("store: flow %s: %w", id, ErrNotFound)
	case casLost(err):
		return fmt.Errorf("store: flow %s changed meanwhile: %w", id, ErrConflict)
	}
	return s.deadline(ctx, fmt.Errorf("store: remove flow %s: %w", id, err))
}

// FlowContext is a flow's context: the values its modules read in their
// input and write with compare-and-swap, and the module runs whose writes
// it holds (the newest maxContextWriters), so a replayed run's write is
// not applied twice.
type FlowContext struct {
	Values  map[string]json.RawMessage `json:"values"`
	Writers []string                   `json:"writers,omitempty"`
	// Revision is the context's revision in the bucket (0: none stored).
	Revision uint64 `json:"-"`
}

// Bounds of a flow's context.
const (
	// MaxFlowContext bounds a flow's context, in bytes of JSON.
	MaxFlowContext = 1 << 20
	// maxContextWriters is how many writers a context remembers.
	maxContextWriters = 1024
)

// Wrote notes run as the context's newest writer.
func (c *FlowContext) Wrote(run string) {
	c.Writers = append(c.Writers, run)
	if len(c.Writers) > maxContextWriters {
		c.Writers = slices.Delete(c.Writers, 0, len(c.Writers)-maxContextWriters)
	}
}

func decodeFlowContext(b []byte) (FlowContext, error) {
	var c FlowContext
	if err := json.Unmarshal(b, &c); err != nil {
		return c, err
	}
	if c.Values == nil {
		return c, errors.New("no values")
	}
	return c, nil
}

// FlowContextOf returns flow's context; one never written is empty, at
// revision 0.
func (s *Store) FlowContextOf(ctx context.Context, flow string) (FlowContext, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	e, err := s.flowContext.Get(ctx, flow)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return FlowContext{Values: map[string]json.RawMessage{}}, nil
	case err != nil:
		return FlowContext{}, s.deadline(ctx, fmt.Errorf("store: context of flow %s: %w", flow, err))
	}
	c, err := decodeFlowContext(e.Value())
	if err != nil {
		return FlowContext{}, fmt.Errorf("store: context of flow %s does not decode: %w", flow, ErrDamaged)
	}
	c.Revision = e.Revision()
	return c, nil
}

// PutFlowContext stores c as flow's context if it is still at c.Revision
// (0: none stored) and returns the new revision; a context written
// meanwhile fails with ErrConflict, one over MaxFlowContext with ErrFull.
func (s *Store) PutFlowContext(ctx context.Context, flow string, c FlowContext) (uint64, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	b, err := json.Marshal(c)
	if err != nil {
		return 0, fmt.Errorf("store: encode the context of flow %s: %w", flow, err)
	}
	if len(b) > MaxFlowContext {
		return 0, fmt.Errorf("store: the context of flow %s would be %d bytes, at most %d: %w", flow, len(b), MaxFlowContext, ErrFull)
	}
	var rev uint64
	if c.Revision == 0 {
		rev, err = s.flowContext.Create(ctx, flow, b)
	} else {
		rev, err = s.flowContext.Update(ctx, flow, b, c.Revision)
	}
	switch {
	case err == nil:
		return rev, nil
	case casLost(err):
		return 0, fmt.Errorf("store: the context of flow %s changed meanwhile: %w", flow, ErrConflict)
	}
	return 0, s.deadline(ctx, fmt.Errorf("store: put the context of flow %s: %w", flow, err))
}

// RemoveFlowContext drops flow's context (the flow is removed).
func (s *Store) RemoveFlowContext(ctx context.Context, flow string) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if err := s.flowContext.Purge(ctx, flow); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return s.deadline(ctx, fmt.Errorf("store: remove the context of flow %s: %w", flow, err))
	}
	return nil
}
