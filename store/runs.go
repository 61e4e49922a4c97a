package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// AppendRun records a run and waits for JetStream to acknowledge it, so a
// run that AppendRun returned for is not lost. A record over MaxRunBytes is
// stored without its output and marked Truncated. The run id doubles as the
// JetStream message id, so a retried append is stored once.
func (s *Store) AppendRun(ctx context.Context, r Run) error {
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
