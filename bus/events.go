package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/contract"
)

// MaxTopicLen is the longest topic, in bytes (contract.MaxTopicLen).
const MaxTopicLen = contract.MaxTopicLen

// CheckTopic reports whether topic is a name events may be published on,
// by the one topic rule (contract.CheckTopic); the error starts "topic:".
func CheckTopic(topic string) error {
	if err := contract.CheckTopic(topic); err != nil {
		return fmt.Errorf("topic: %w", err)
	}
	return nil
}

// EventsConfig bounds the events stream.
type EventsConfig struct {
	// MaxAge is how long an event is kept, consumed or not. Default 7 days.
	MaxAge time.Duration
	// MaxBytes caps the stream; the oldest events go first. Default 256 MiB.
	MaxBytes int64
	// MaxMessage caps one event's payload in bytes. Default 64 KiB.
	MaxMessage int32
}

// Defaults of EventsConfig.
const (
	DefaultEventsMaxAge     = 7 * 24 * time.Hour
	DefaultEventsMaxBytes   = 256 << 20
	DefaultEventsMaxMessage = 64 << 10
)

// EventStream creates or updates the events stream (StreamEvents, subjects
// andromeda.events.>) with cfg's bounds, zero fields taking their
// defaults, and returns it.
func (b *Bus) EventStream(ctx context.Context, cfg EventsConfig) (jetstream.Stream, error) {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultEventsMaxAge
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultEventsMaxBytes
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultEventsMaxMessage
	}
	s, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       StreamEvents,
		Subjects:   []string{SubjectEventsPrefix + ">"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		MaxAge:     cfg.MaxAge,
		MaxBytes:   cfg.MaxBytes,
		MaxMsgSize: cfg.MaxMessage + 4<<10, // room for headers
		Duplicates: 2 * time.Minute,
		Replicas:   b.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: events stream: %w", err)
	}
	return s, nil
}
