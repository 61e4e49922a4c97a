package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
)

// MaxListRuns caps how many runs one listing returns.
const MaxListRuns = 1000

// AppendRun records a run and waits for JetStream to acknowledge it, so a
// run that AppendRun returned for is not lost. A record over MaxRunBytes is
// stored without its output and marked Truncated. The run id doubles as the
// JetStream message id, so a retried append is stored once.
func (s *Store) AppendRun(ctx context.Context, r api.Run) error {
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
func (s *Store) AppendRunAsync(r api.Run) (jetstream.PubAckFuture, error) {
	b, err := s.encodeRun(&r)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: bus.RunSubject(r.Service), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, r.ID)
	return s.js.PublishMsgAsync(msg)
}

func (s *Store) encodeRun(r *api.Run) ([]byte, error) {
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

// Runs returns up to limit most recent runs of one service, newest first.
func (s *Store) Runs(ctx context.Context, service string, limit int) ([]api.Run, error) {
	limit = clampLimit(limit)
	c, err := s.js.OrderedConsumer(ctx, bus.StreamRuns, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.RunSubject(service)},
	})
	if err != nil {
		return nil, fmt.Errorf("store: read runs of %s: %w", service, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: read runs of %s: %w", service, err)
	}
	pending := int(info.NumPending)
	all := make([]api.Run, 0, pending)
	for read := 0; read < pending; {
		batch, err := c.Fetch(min(pending-read, 500), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("store: read runs of %s: %w", service, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var r api.Run
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				continue // a record we cannot read is skipped, not fatal
			}
			all = append(all, r)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("store: read runs of %s: %w", service, err)
		}
		if n == 0 {
			break
		}
		read += n
	}
	if len(all) > limit {
		all = all[len(all)-limit:]
	}
	reverse(all)
	return all, nil
}

// RecentRuns returns up to limit most recent runs of all services, newest
// first.
func (s *Store) RecentRuns(ctx context.Context, limit int) ([]api.Run, error) {
	limit = clampLimit(limit)
	info, err := s.runs.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: read runs: %w", err)
	}
	out := make([]api.Run, 0, limit)
	for seq := info.State.LastSeq; seq >= info.State.FirstSeq && seq > 0 && len(out) < limit; seq-- {
		m, err := s.runs.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: read run %d: %w", seq, err)
		}
		var r api.Run
		if json.Unmarshal(m.Data, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Run finds one run of a service by id.
func (s *Store) Run(ctx context.Context, service, id string) (api.Run, error) {
	runs, err := s.Runs(ctx, service, MaxListRuns)
	if err != nil {
		return api.Run{}, err
	}
	for _, r := range runs {
		if r.ID == id {
			return r, nil
		}
	}
	return api.Run{}, fmt.Errorf("run %s of %s: %w", id, service, ErrNotFound)
}

// RunCount reports how many run records a service has.
func (s *Store) RunCount(ctx context.Context, service string) (int, error) {
	info, err := s.runs.Info(ctx, jetstream.WithSubjectFilter(bus.RunSubject(service)))
	if err != nil {
		return 0, fmt.Errorf("store: count runs of %s: %w", service, err)
	}
	return int(info.State.Subjects[bus.RunSubject(service)]), nil
}

func clampLimit(n int) int {
	if n <= 0 {
		return 20
	}
	return min(n, MaxListRuns)
}

func reverse(v []api.Run) {
	for i, j := 0, len(v)-1; i < j; i, j = i+1, j-1 {
		v[i], v[j] = v[j], v[i]
	}
}
