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

// The group commit of run records (AppendRun): how many records may wait
// for their acknowledgement at once, and how long each may wait.
const (
	groupWindow     = 1024
	groupAckTimeout = 10 * time.Second
)

// AppendRun records a run and waits for JetStream to acknowledge it, so a
// run that AppendRun returned for is not lost. A record over MaxRunBytes is
// stored without its output and marked Truncated. The run id doubles as the
// JetStream message id, so a retried append is stored once.
//
// Records of concurrent runs share the connection as a group commit: each
// is published without waiting for the one before (at most groupWindow
// unacknowledged at once; a caller beyond that waits for room), and each
// caller waits for its own record's acknowledgement. An error (no
// acknowledgement within groupAckTimeout or ctx, a stream refusing the
// record) is its record's alone and is returned to its caller only; a
// record whose caller stopped waiting may still be stored, and a retry
// with the same id is deduplicated.
func (s *Store) AppendRun(ctx context.Context, r Run) error {
	b, err := s.encodeRun(&r)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: bus.RunSubject(r.Service), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, r.ID)
	// Beyond the window, wait for room as long as an acknowledgement may
	// take (bounded by ctx, as publishing checks it first).
	wait := groupAckTimeout
	if d, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(d)), time.Millisecond)
	}
	f, err := s.group.PublishMsgAsync(msg, jetstream.WithStallWait(wait))
	if err != nil {
		return fmt.Errorf("store: record run %s of %s: %w", r.ID, r.Service, err)
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("store: record run %s of %s: %w", r.ID, r.Service, err)
	case <-ctx.Done():
		return fmt.Errorf("store: record run %s of %s: %w", r.ID, r.Service, ctx.Err())
	}
}

// appendRunSync is AppendRun as it was before the group commit: one
// publish, waited for, at a time per caller. Kept for the benchmark that
// compares the two.
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

// AppendRunAsync records a run without waiting; the returned future reports
// the acknowledgement. Used where many runs are recorded at once.
func (s *Store) AppendRunAsync(r Run) (jetstream.PubAckFuture, error) {
	b, err := s.encodeRun(&r)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: bus.RunSubject(r.Service), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, r.ID)
	return s.js.PublishMsgAsync(msg)
}

func (s *Store) encodeRun(r *Run) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("store: encode run %s: %w", r.ID, err)
	}
	// Leave room for headers within the stream's MaxMsgSize.
	limit := s.cfg.MaxRunBytes - 512
	if len(b) <= limit {
		return b, nil
	}
	r.Output, r.Truncated = nil, true
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
	return b, nil
}
