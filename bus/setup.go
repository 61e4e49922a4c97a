package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// setupJS is the JetStream of a node whose streams are replicated: its
// calls that create or update a stream, bucket or object store are tried
// again when one goes unanswered. A clustered JetStream can leave such a
// call without an answer when the same stream is created from several
// servers at once (every node creates its streams as it starts), and the
// same call again is answered at once.
type setupJS struct {
	jetstream.JetStream
}

// setupAttempt bounds the first attempt, each next one twice as long up
// to setupMaxAttempt (a stream is created in tens of milliseconds; a
// loaded machine may take longer, and an attempt again is harmless);
// setupWait bounds all of them when the caller's context has no deadline.
const (
	setupAttempt    = 250 * time.Millisecond
	setupMaxAttempt = 4 * time.Second
	setupWait       = 60 * time.Second
)

// retry calls f with a context per attempt, again while an attempt times
// out and ctx has time left.
func retry[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, setupWait)
		defer cancel()
	}
	for attempt := setupAttempt; ; attempt = min(2*attempt, setupMaxAttempt) {
		actx, cancel := context.WithTimeout(ctx, attempt)
		v, err := f(actx)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return v, err
		}
	}
}

func (j setupJS) CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return j.JetStream.CreateOrUpdateStream(ctx, cfg) })
	if err != nil {
		return nil, err
	}
	return s, j.waitLeader(ctx, cfg.Name)
}

func (j setupJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return j.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	})
	if err != nil {
		return nil, err
	}
	return kv, j.waitLeader(ctx, "KV_"+cfg.Bucket)
}

func (j setupJS) CreateOrUpdateObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	obj, err := retry(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return j.JetStream.CreateOrUpdateObjectStore(ctx, cfg)
	})
	if err != nil {
		return nil, err
	}
	return obj, j.waitLeader(ctx, "OBJ_"+cfg.Bucket)
}

// waitLeader waits until stream has a leader: one just made takes reads
// and writes only then, and before it they meet "no responders".
func (j setupJS) waitLeader(ctx context.Context, stream string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, setupWait)
		defer cancel()
	}
	for {
		s, err := retry(ctx, func(ctx context.Context) (jetstream.Stream, error) { return j.JetStream.Stream(ctx, stream) })
		if err == nil {
			if c := s.CachedInfo().Cluster; c == nil || c.Leader != "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: stream %s has no leader: %w", stream, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
