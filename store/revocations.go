package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/bus"
)

// Bounds of the revocations bucket: the node stores verified revocations
// by trusted hubs from any principal and others only from the operator
// (package node), and the bucket bounds what that can fill on disk.
const (
	// MaxRevocationsBytes caps the revocations bucket. Default 16 MiB,
	// some forty thousand revocations.
	MaxRevocationsBytes = 16 << 20
)

// ErrFull is returned when a bounded bucket (the revocations) has no room
// left.
var ErrFull = errors.New("full")

// createRevocations creates or updates the revocations bucket.
func (s *Store) createRevocations(ctx context.Context) error {
	var err error
	s.revocations, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketRevocations, Description: "andromeda revocations of delegations: delegation id.revoking key → revocation",
		History: 1, Storage: jetstream.FileStorage, Replicas: s.cfg.Replicas,
		MaxBytes: MaxRevocationsBytes, MaxValueSize: attest.MaxRevocationSize,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", bus.BucketRevocations, err)
	}
	if s.revocationStream, err = s.js.Stream(ctx, kvStream(bus.BucketRevocations)); err != nil {
		return fmt.Errorf("store: bucket %s: %w", bus.BucketRevocations, err)
	}
	return nil
}

// revocationKey is the bucket key of r: the delegation id's hex, a dot and
// the revoking key's hex, so one key's revocation of one delegation is
// kept once.
func revocationKey(r attest.Revocation) (string, error) {
	k, err := attest.ParsePublicKey(r.Key)
	if err != nil {
		return "", fmt.Errorf("key: %w", err)
	}
	id, ok := strings.CutPrefix(r.Delegation, "sha256:")
	if !ok || attest.CheckDigest(r.Delegation) != nil {
		return "", fmt.Errorf("delegation: must be sha256: and 64 hex digits")
	}
	return id + "." + hex.EncodeToString(k), nil
}

// PutRevocation stores a revocation; the caller has verified it. Of the
// revocations of one delegation by one key the store keeps the earliest
// revoked_at: one dated the same or later changes nothing (a replayed,
// later-dated revocation must not undo an earlier one until its date), and
// PutRevocation returns the one held with stored false. The check and the
// write are one compare-and-set, so concurrent posts cannot race past it.
// The error wraps ErrFull when the bucket has no room.
func (s *Store) PutRevocation(ctx context.Context, r attest.Revocation) (held attest.Revocation, stored bool, err error) {
	key, err := revocationKey(r)
	if err != nil {
		return r, false, fmt.Errorf("store: revocation: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return r, false, fmt.Errorf("store: encode revocation: %w", err)
	}
	for {
		var rev uint64
		e, err := s.revocations.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return r, false, fmt.Errorf("store: get revocation: %w", err)
		default:
			var old attest.Revocation
			if json.Unmarshal(e.Value(), &old) == nil && !r.RevokedAt.Before(old.RevokedAt) {
				return old, false, nil
			}
			rev = e.Revision() // an undecodable record is replaced
		}
		if rev == 0 {
			_, err = s.revocations.Create(ctx, key, b)
		} else {
			_, err = s.revocations.Update(ctx, key, b, rev)
		}
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			return r, true, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch),
			errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
			continue // written meanwhile: judge again against it
		case errors.Is(err, jetstream.ErrMaxBytesExceeded) || strings.Contains(err.Error(), "maximum bytes"):
			return r, false, fmt.Errorf("store: put revocation: %w (at most %d bytes of revocations)", ErrFull, MaxRevocationsBytes)
		}
		return r, false, fmt.Errorf("store: put revocation: %w", err)
	}
}

// Revocations returns every stored revocation, sorted by delegation id and
// key. It takes at most Config.Timeout (or ctx's earlier deadline). A
// record that cannot be read or decoded fails the listing with ErrDamaged
// unless the store was opened with Repair: then it is skipped.
func (s *Store) Revocations(ctx context.Context) ([]attest.Revocation, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	vals, unreadable, err := kvValues(ctx, s.js, s.revocationStream)
	if err != nil {
		return nil, s.deadline(ctx, fmt.Errorf("store: list revocations: %w", err))
	}
	if len(unreadable) > 0 && !s.cfg.Repair {
		return nil, fmt.Errorf("store: list revocations: record(s) of %s unreadable: %w", strings.Join(unreadable, ", "), ErrDamaged)
	}
	out := make([]attest.Revocation, 0, len(vals))
	for _, v := range vals {
		if v.deleted {
			continue
		}
		var r attest.Revocation
		if err := json.Unmarshal(v.value, &r); err != nil {
			if s.cfg.Repair {
				continue
			}
			return nil, fmt.Errorf("store: revocation %s does not decode: %w", v.key, ErrDamaged)
		}
		out = append(out, r)
	}
	return out, nil
}
