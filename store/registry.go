package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// PutService writes a service record, replacing any previous one.
func (s *Store) PutService(ctx context.Context, svc Service) error {
	b, err := json.Marshal(svc)
	if err != nil {
		return fmt.Errorf("store: encode service %s: %w", svc.Name, err)
	}
	if _, err := s.services.Put(ctx, svc.Name, b); err != nil {
		return fmt.Errorf("store: put service %s: %w", svc.Name, err)
	}
	s.markRegistryWrite(ctx)
	return nil
}

// Service reads one service record.
func (s *Store) Service(ctx context.Context, name string) (Service, error) {
	var svc Service
	e, err := s.services.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return svc, fmt.Errorf("service %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return svc, fmt.Errorf("store: get service %s: %w", name, err)
	}
	if err := json.Unmarshal(e.Value(), &svc); err != nil {
		return svc, fmt.Errorf("store: decode service %s: %w", name, err)
	}
	return svc, nil
}

// Services lists every service record, sorted by name. It takes at most
// Config.Timeout (or ctx's earlier deadline). A record the registry lists
// but JetStream cannot return, or one that does not decode, fails the
// listing with ErrDamaged, unless the store was opened with Repair: then it
// is skipped (Recovery names it).
func (s *Store) Services(ctx context.Context) ([]Service, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	vals, unreadable, err := kvValues(ctx, s.js, s.registry)
	if err != nil {
		return nil, s.deadline(ctx, fmt.Errorf("store: list services: %w", err))
	}
	if len(unreadable) > 0 && !s.cfg.Repair {
		return nil, fmt.Errorf("store: list services: record(s) of %s unreadable: %w", strings.Join(unreadable, ", "), ErrDamaged)
	}
	out := make([]Service, 0, len(vals))
	for _, v := range vals {
		if v.deleted {
			continue
		}
		var svc Service
		if err := json.Unmarshal(v.value, &svc); err != nil {
			if s.cfg.Repair {
				continue
			}
			return nil, fmt.Errorf("store: decode service %s: %v: %w", v.key, err, ErrDamaged)
		}
		out = append(out, svc)
	}
	sortServices(out)
	return out, nil
}

func sortServices(v []Service) {
	slices.SortFunc(v, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
}

// DeleteService removes a service record, its state and its run records.
// Its artifact stays (another version or service may share the digest).
func (s *Store) DeleteService(ctx context.Context, name string) error {
	if err := s.RemoveService(ctx, name); err != nil {
		return err
	}
	return s.PurgeRuns(ctx, name)
}

// RemoveService deletes a service's record and state and keeps its runs:
// they stay, listed by the service's name, until the runs stream's
// limits drop them (PurgeRuns deletes them at once).
func (s *Store) RemoveService(ctx context.Context, name string) error {
	if _, err := s.Service(ctx, name); err != nil {
		return err
	}
	if err := s.services.Purge(ctx, name); err != nil {
		return fmt.Errorf("store: delete service %s: %w", name, err)
	}
	s.markRegistryWrite(ctx)
	if err := s.state.Purge(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("store: delete state of %s: %w", name, err)
	}
	return nil
}

// PurgeRuns deletes every run record of a service.
func (s *Store) PurgeRuns(ctx context.Context, name string) error {
	if err := s.runs.Purge(ctx, jetstream.WithPurgeSubject(bus.RunSubject(name))); err != nil {
		return fmt.Errorf("store: delete runs of %s: %w", name, err)
	}
	return nil
}

// PutArtifact stores an archive under its digest. Storing the same digest
// twice is a no-op.
func (s *Store) PutArtifact(ctx context.Context, digest string, data []byte) error {
	key := artifactKey(digest)
	if _, err := s.artifacts.GetInfo(ctx, key); err == nil {
		return nil
	}
	if _, err := s.artifacts.PutBytes(ctx, key, data); err != nil {
		return fmt.Errorf("store: put artifact %s: %w", digest, err)
	}
	return nil
}

// Artifact reads an archive by digest.
func (s *Store) Artifact(ctx context.Context, digest string) ([]byte, error) {
	var b []byte
	var err error
	// An object is read through a consumer; one made while the bucket's
	// stream elects a leader (its server just went) can wait forever for
	// chunks. Each attempt is bounded, and one that timed out is made
	// again while ctx lasts.
	bound := artifactAttempt
	if info, err := s.artifacts.GetInfo(ctx, artifactKey(digest)); err == nil {
		bound = artifactBase + time.Duration(info.Size/artifactRate)*time.Second
	}
	// In a cluster, the consumer may be served by a replica that has not
	// applied every chunk yet: the object then reads short and its digest
	// does not match. That replica has them a moment later, so that read
	// is made again too.
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, bound)
		b, err = s.artifacts.GetBytes(actx, artifactKey(digest))
		cancel()
		short := errors.Is(err, jetstream.ErrDigestMismatch)
		if !errors.Is(err, context.DeadlineExceeded) && !short || ctx.Err() != nil || attempt == artifactAttempts {
			break
		}
		if short {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("artifact %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get artifact %s: %w", digest, err)
	}
	return b, nil
}

// An artifact read is attempted artifactAttempts times at most, each
// bounded by artifactBase and a second for every artifactRate bytes of it
// (artifactAttempt when its size is not known).
const (
	artifactBase     = 3 * time.Second
	artifactRate     = 8 << 20
	artifactAttempt  = 10 * time.Second
	artifactAttempts = 12
)

func artifactKey(digest string) string { return strings.ReplaceAll(digest, ":", "-") }

// PutToken stores a token record under the hash of its secret.
func (s *Store) PutToken(ctx context.Context, hash string, t TokenRecord) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := s.tokens.Put(ctx, hash, b); err != nil {
		return fmt.Errorf("store: put token %s: %w", t.Name, err)
	}
	return nil
}

// Token looks a token up by the hash of its secret.
func (s *Store) Token(ctx context.Context, hash string) (TokenRecord, error) {
	var t TokenRecord
	e, err := s.tokens.Get(ctx, hash)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return t, fmt.Errorf("token: %w", ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("store: get token: %w", err)
	}
	return t, json.Unmarshal(e.Value(), &t)
}
