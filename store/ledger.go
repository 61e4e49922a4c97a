package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// The ledger is where the node keeps every execution of a run's actions,
// from the moment it is planned (before the run is recorded) to its end
// (confirmed or failed). An execution moves planned → sent → confirmed or
// failed, each step a compare-and-swap on its record, so two executors
// never both own one, and a node killed at any point finds, at start,
// every execution that had not ended (the open index) and resumes it
// under the same idempotency key.

// Execution states.
const (
	ExecPlanned   = "planned"   // written before the run was recorded; not yet tried
	ExecSent      = "sent"      // an attempt is (or was, when the node stopped) under way
	ExecRetry     = "retry"     // an attempt failed transiently; the next is due at Next
	ExecConfirmed = "confirmed" // done: the endpoint (or the bus, or the log) took it
	ExecFailed    = "failed"    // done: will not be tried again; Error says why
)

// Final reports whether an execution in state s has ended.
func Final(s string) bool { return s == ExecConfirmed || s == ExecFailed }

// Execution is the ledger record of one execution: one action, or every
// submit action of a run (one signed envelope).
type Execution struct {
	// Key is the idempotency key, derived from the service, the run and
	// the canonical digest of what is executed; it travels to HTTP
	// endpoints as Idempotency-Key.
	Key     string `json:"key"`
	Service string `json:"service"`
	Run     string `json:"run"`
	// Seq orders a run's executions: the index of its (first) action.
	Seq     int    `json:"seq"`
	Actions []int  `json:"actions"` // indexes into the run's output actions
	Kind    string `json:"kind"`
	Target  string `json:"target,omitempty"` // submit: the target the envelope goes to
	// Digest is sha256 of the canonical request: the action's params, or
	// the envelope.
	Digest string `json:"digest"`
	// Request is what is executed: the action's params, or the sealed
	// envelope a submit POSTs.
	Request json.RawMessage `json:"request"`
	// Endpoint is where a submit envelope goes (from the node's config at
	// planning time).
	Endpoint string    `json:"endpoint,omitempty"`
	State    string    `json:"state"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error,omitempty"`
	Response *Response `json:"response,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	Next     time.Time `json:"next,omitzero"` // retry: when the next attempt is due
	// Node is the node that sends it: the one that planned it (Config.Node
	// when planned), or the one that took its service over from that
	// node. In a cluster no other node resumes it. "" in records written
	// before it was kept.
	Node string `json:"node,omitempty"`
}

// Response is what the other side answered an execution's last attempt:
// an HTTP status and the start of the body, or an event's sequence.
type Response struct {
	Status    int    `json:"status,omitempty"`
	Body      string `json:"body,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	Seq       uint64 `json:"seq,omitempty"`
}

// ledgerKey is the ledger key of a run's execution: service.run.seq.
func ledgerKey(service, run string, seq int) string {
	return service + "." + run + "." + strconv.Itoa(seq)
}

// PlanExecutions writes a run's executions as planned and indexes them as
// open. An execution already in the ledger (planned by an earlier attempt
// to record the same run) is kept as it is: planning is idempotent.
func (s *Store) PlanExecutions(ctx context.Context, es []Execution) error {
	for i := range es {
		e := &es[i]
		if e.Node == "" {
			e.Node = s.cfg.Node
		}
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("store: encode execution %s: %w", e.Key, err)
		}
		key := ledgerKey(e.Service, e.Run, e.Seq)
		if _, err := s.open.Put(ctx, key, nil); err != nil {
			return fmt.Errorf("store: index execution %s: %w", key, err)
		}
		if _, err := s.ledger.Create(ctx, key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("store: plan execution %s: %w", key, err)
		}
	}
	return nil
}

// LedgerEntry is an execution with the revision a compare-and-swap needs.
type LedgerEntry struct {
	Execution
	Revision uint64
}

// Execution reads one execution.
func (s *Store) Execution(ctx context.Context, service, run string, seq int) (LedgerEntry, error) {
	e, err := s.ledger.Get(ctx, ledgerKey(service, run, seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return LedgerEntry{}, ErrNotFound
	}
	if err != nil {
		return LedgerEntry{}, fmt.Errorf("store: read execution: %w", err)
	}
	var x Execution
	if err := json.Unmarshal(e.Value(), &x); err != nil {
		return LedgerEntry{}, fmt.Errorf("store: execution %s: %w", e.Key(), err)
	}
	return LedgerEntry{Execution: x, Revision: e.Revision()}, nil
}

// executionAtLeader reads the execution of ledger key from the ledger
// stream's leader.
func (s *Store) executionAtLeader(ctx context.Context, key string) (LedgerEntry, error) {
	m, err := leaderLastMsg(ctx, s.js, "KV_"+ledgerBucket, "$KV."+ledgerBucket+"."+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && m.Header.Get("KV-Operation") != "" {
		return LedgerEntry{}, ErrNotFound // never stored, or deleted
	}
	if err != nil {
		return LedgerEntry{}, fmt.Errorf("store: read execution %s at the leader: %w", key, err)
	}
	var x Execution
	if err := json.Unmarshal(m.Data, &x); err != nil {
		return LedgerEntry{}, fmt.Errorf("store: execution %s: %w", key, err)
	}
	return LedgerEntry{Execution: x, Revision: m.Sequence}, nil
}

// UpdateExecution writes e over revision rev: ErrConflict when someone
// wrote it since. An execution that ends leaves the open index.
func (s *Store) UpdateExecution(ctx context.Context, e Execution, rev uint64) (uint64, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("store: encode execution %s: %w", e.Key, err)
	}
	key := ledgerKey(e.Service, e.Run, e.Seq)
	nrev, err := s.ledger.Update(ctx, key, b, rev)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("store: update execution %s: %w", key, err)
	}
	if Final(e.State) {
		if err := s.open.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			// Left in the index, it is looked at again at the next start
			// and found final: harmless.
			return nrev, nil
		}
	}
	return nrev, nil
}

// Executions returns a run's executions in order; none is not an error.
func (s *Store) Executions(ctx context.Context, service, run string) ([]Execution, error) {
	lister, err := s.ledger.ListKeysFiltered(ctx, service+"."+run+".*")
	if err != nil {
		return nil, fmt.Errorf("store: list executions of %s: %w", run, err)
	}
	var out []Execution
	for key := range lister.Keys() {
		e, err := s.ledger.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: read execution %s: %w", key, err)
		}
		var x Execution
		if err := json.Unmarshal(e.Value(), &x); err != nil {
			return nil, fmt.Errorf("store: execution %s: %w", key, err)
		}
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b Execution) int { return a.Seq - b.Seq })
	return out, nil
}

// OpenExecutions returns every execution that had not ended, with its
// revision. Index entries of executions that ended (or were never
// planned) are dropped.
func (s *Store) OpenExecutions(ctx context.Context) ([]LedgerEntry, error) {
	lister, err := s.open.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: list open executions: %w", err)
	}
	var out []LedgerEntry
	for key := range lister.Keys() {
		service, rest, _ := strings.Cut(key, ".")
		run, seqs, _ := strings.Cut(rest, ".")
		seq, err := strconv.Atoi(seqs)
		if err != nil {
			s.open.Purge(ctx, key)
			continue
		}
		e, err := s.Execution(ctx, service, run, seq)
		if errors.Is(err, ErrNotFound) {
			// A read may reach a replica behind the one that stored it
			// (in a cluster, just after it was planned): the stream's
			// leader says whether it is really not there.
			e, err = s.executionAtLeader(ctx, key)
		}
		if errors.Is(err, ErrNotFound) || err == nil && Final(e.State) {
			s.open.Purge(ctx, key)
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b LedgerEntry) int {
		if c := strings.Compare(a.Run, b.Run); c != 0 {
			return c
		}
		return a.Seq - b.Seq
	})
	return out, nil
}

// Buckets of the ledger (see bus/names.go).
const (
	ledgerBucket = bus.BucketLedger
	openBucket   = bus.BucketLedgerOpen
)
