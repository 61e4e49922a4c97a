package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxTopicLen is the longest topic, in bytes.
const MaxTopicLen = 128

// CheckTopic reports whether topic is a name events may be published on:
// 1 to MaxTopicLen characters, dot-separated tokens of [a-z0-9_-], no
// wildcards and no empty token. The error says which rule is broken.
func CheckTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("topic: must not be empty")
	case len(topic) > MaxTopicLen:
		return fmt.Errorf("topic: at most %d characters, got %d", MaxTopicLen, len(topic))
	}
	for i, tok := range strings.Split(topic, ".") {
		if tok == "" {
			return fmt.Errorf("topic %q: token %d is empty (no leading, trailing or double dots)", topic, i+1)
		}
		for _, c := range tok {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("topic %q: tokens are made of [a-z0-9_-] (no wildcards, no upper case), found %q", topic, c)
			}
		}
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
	})
	if err != nil {
		return nil, fmt.Errorf("bus: events stream: %w", err)
	}
	return s, nil
}
