package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// runWindow bounds how many run records may wait for their acknowledgement
// at once; a caller beyond it waits for room (up to its deadline).
const runWindow = 1024

// AppendRun records a run and waits for JetStream to acknowledge it, so a
// run that AppendRun returned for is not lost. Concurrent callers share the
// connection: each record is published without waiting for the previous
// one's acknowledgement (at most runWindow in flight), and each caller waits
// for its own, so one failed record fails only its caller. An
// acknowledgement that does not come within the store's Timeout (or before
// ctx ends) is an error, never a success. A record over MaxRunBytes is
// stored without its output and marked Truncated. The run id doubles as the
// JetStream message id, so a retried append is stored once.
func (s *Store) AppendRun(ctx context.Context, r Run) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	b, err := s.encodeRun(&r)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		return fmt.Errorf("store: record run %s of %s: %w", r.ID, r.Service, err)
	}
	msg := &nats.Msg{Subject: bus.RunSubject(r.Service), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, r.ID)
	stall := s.cfg.Timeout
	if d, ok := ctx.Deadline(); ok {
		stall = max(time.Until(d), time.Millisecond)
	}
	f, err := s.async.PublishMsgAsync(msg, jetstream.WithStallWait(stall))
	if err != nil {
		return fail(err)
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fail(err)
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// appendRunSync is AppendRun as it was before group commit: one
// synchronous publish per record. Kept for tests and the benchmark.
func (s *Store) appendRunSync(ctx context.Context, r Run) error {
	b, err := s.encodeRun(&r)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: bus.RunSubject(r.Service), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, r.ID)
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("store: record run %s of %s: %w", r.ID, r.Service, err)
	}
	return nil
}

// Close waits (up to the store's Timeout) for the run records still waiting
// for their acknowledgement. The bus stays open: it is the caller's.
func (s *Store) Close() error {
	if s.async == nil {
		return nil
	}
	select {
	case <-s.async.PublishAsyncComplete():
		return nil
	case <-time.After(s.cfg.Timeout):
		return fmt.Errorf("store: %d run records still unacknowledged after %v", s.async.PublishAsyncPending(), s.cfg.Timeout)
	}
}

// AppendRunAsync records a run without waiting; the returned future reports
// the acknowledgement. Used where many runs are recorded at once.
func (s *Store) AppendRunAsync(r Run) (jetstream.PubAckFuture, error) {
	b, err := s.encodeRun(&r)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: bus.RunSubject(r.Service), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, r.ID)
	return s.async.PublishMsgAsync(msg)
}

func (s *Store) encodeRun(r *Run) ([]byte, error) {
	if r.Node == "" {
		r.Node = s.cfg.Node
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("store: encode run %s: %w", r.ID, err)
	}
	// Leave room for headers within the stream's MaxMsgSize.
	limit := s.cfg.MaxRunBytes - 512
	if len(b) <= limit {
		return b, nil
	}
	r.Output, r.Input, r.Truncated = nil, nil, true
	const maxErr = 4 << 10
	if len(r.Error) > maxErr {
		r.Error = r.Error[:maxErr] + "…"
	}
	if len(r.Noop) > maxErr {
		r.Noop = r.Noop[:maxErr] + "…"
	}
	b, err = json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("store: encode run %s: %w", r.ID, err)
	}
	if len(b) > limit && len(r.Emitted) > 0 {
		// What became of the emits is the last to go: a service can name
		// hundreds of long topics, and a record that never fits would
		// never be stored (it would wait at the head of the runs recorded
		// late for good).
		r.Emitted = nil
		if b, err = json.Marshal(r); err != nil {
			return nil, fmt.Errorf("store: encode run %s: %w", r.ID, err)
		}
	}
	return b, nil
}
