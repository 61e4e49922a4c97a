package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/bus"
)

// MaxForwards is how many forward records the store keeps, the newest.
const MaxForwards = 10000

// Forward is the record of a service the node forwarded to its peers:
// where, why, and what came back (api.Forward is its wire form).
type Forward struct {
	At time.Time `json:"at"`
	// Kind is forward (a service this node did not run) or advertise (one
	// it runs, offered to a peer).
	Kind        string          `json:"kind,omitempty"`
	Service     string          `json:"service"`
	Version     string          `json:"version"`
	Digest      string          `json:"digest"`
	Submitter   string          `json:"submitter"`
	Path        []string        `json:"path,omitempty"`
	Peer        string          `json:"peer"`
	Outcome     string          `json:"outcome"`
	Detail      string          `json:"detail,omitempty"`
	Skipped     []string        `json:"skipped,omitempty"`
	Receipt     *attest.Receipt `json:"receipt,omitempty"`
	PeerReceipt *attest.Receipt `json:"peer_receipt,omitempty"`
}

// createForwards creates or updates the forwards stream.
func (s *Store) createForwards(ctx context.Context) error {
	var err error
	s.forwards, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: bus.StreamForwards, Description: "andromeda services forwarded to peers, and their answers",
		Subjects: []string{bus.SubjectForwards}, Storage: jetstream.FileStorage, Replicas: s.cfg.Replicas,
		MaxMsgs: MaxForwards, Discard: jetstream.DiscardOld, MaxMsgSize: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", bus.StreamForwards, err)
	}
	return nil
}

// AppendForward stores f, acknowledged by JetStream before it returns.
func (s *Store) AppendForward(ctx context.Context, f Forward) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("store: encode forward: %w", err)
	}
	if _, err := s.js.Publish(ctx, bus.SubjectForwards, b); err != nil {
		return s.deadline(ctx, fmt.Errorf("store: append forward: %w", err))
	}
	return nil
}

// Forwards returns the newest limit forward records, newest first. A
// record that cannot be decoded fails the listing with ErrDamaged unless
// the store was opened with Repair: then it is skipped.
func (s *Store) Forwards(ctx context.Context, limit int) ([]Forward, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	info, err := s.forwards.Info(ctx)
	if err != nil {
		return nil, s.deadline(ctx, fmt.Errorf("store: list forwards: %w", err))
	}
	out := []Forward{}
	for seq := info.State.LastSeq; seq >= info.State.FirstSeq && seq > 0 && len(out) < limit; seq-- {
		m, err := s.forwards.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, s.deadline(ctx, fmt.Errorf("store: list forwards: %w", err))
		}
		var f Forward
		if err := json.Unmarshal(m.Data, &f); err != nil {
			if s.cfg.Repair {
				continue
			}
			return nil, fmt.Errorf("store: forward record %d: %w: %v", seq, ErrDamaged, err)
		}
		out = append(out, f)
	}
	return out, nil
}
