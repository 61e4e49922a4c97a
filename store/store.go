// Package store keeps everything a node must not lose on JetStream: the
// service registry and API tokens (KV), the submitted artifacts (object
// store), per-service state (KV, one compare-and-swap object per service) and
// the run records (a stream with one subject per service, bounded by count
// per service and by bytes overall). It is a concrete type on purpose: there
// is one store, and tests run it on a real embedded NATS server.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// Config bounds what the store keeps.
type Config struct {
	// RunsPerService is how many run records are kept per service; older
	// ones are dropped. Default 1000.
	RunsPerService int64
	// MaxRunBytes caps one run record; a larger record keeps its outcome,
	// error and usage but drops its output (Run.Truncated). Default 64 KiB.
	// So a service never holds more than RunsPerService × MaxRunBytes.
	MaxRunBytes int
	// RunsMaxBytes caps all run records together; the oldest go first.
	// Default 512 MiB.
	RunsMaxBytes int64
	// MaxStateBytes caps one service's state object. Default 1 MiB.
	MaxStateBytes int
	// Replicas for streams and buckets (1 for a single node). Default 1.
	Replicas int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		RunsPerService: 1000,
		MaxRunBytes:    64 << 10,
		RunsMaxBytes:   512 << 20,
		MaxStateBytes:  1 << 20,
		Replicas:       1,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.RunsPerService <= 0 {
		c.RunsPerService = d.RunsPerService
	}
	if c.MaxRunBytes <= 0 {
		c.MaxRunBytes = d.MaxRunBytes
	}
	if c.RunsMaxBytes <= 0 {
		c.RunsMaxBytes = d.RunsMaxBytes
	}
	if c.MaxStateBytes <= 0 {
		c.MaxStateBytes = d.MaxStateBytes
	}
	if c.Replicas <= 0 {
		c.Replicas = d.Replicas
	}
}

var (
	// ErrNotFound is returned for a service, artifact, run or token that
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when state changed since the snapshot a write
	// was based on.
	ErrConflict = errors.New("state changed since the snapshot")
	// ErrTooLarge is returned for state that would exceed MaxStateBytes.
	ErrTooLarge = errors.New("too large")
)

// Store is the node's persistent state on JetStream. Safe for concurrent use.
type Store struct {
	cfg       Config
	js        jetstream.JetStream
	services  jetstream.KeyValue
	state     jetstream.KeyValue
	tokens    jetstream.KeyValue
	pending   jetstream.KeyValue
	artifacts jetstream.ObjectStore
	runs      jetstream.Stream
}

// Open creates (or updates) the streams and buckets and returns the store.
// The bus stays owned by the caller.
func Open(ctx context.Context, b *bus.Bus, cfg Config) (*Store, error) {
	cfg.fill()
	s := &Store{cfg: cfg, js: b.JS}
	var err error
	kv := func(name, desc string) jetstream.KeyValue {
		if err != nil {
			return nil
		}
		var v jetstream.KeyValue
		v, err = b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: desc, History: 1,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		})
		if err != nil {
			err = fmt.Errorf("store: bucket %s: %w", name, err)
		}
		return v
	}
	s.services = kv(bus.BucketServices, "andromeda service registry")
	s.state = kv(bus.BucketState, "andromeda per-service state")
	s.tokens = kv(bus.BucketTokens, "andromeda API tokens (hashed)")
	s.pending = kv(bus.BucketPending, "andromeda runs whose state is being committed (write-ahead)")
	if err != nil {
		return nil, err
	}
	s.artifacts, err = b.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: bus.ObjectArtifacts, Description: "andromeda service archives by digest",
		Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("store: object store %s: %w", bus.ObjectArtifacts, err)
	}
	s.runs, err = b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              bus.StreamRuns,
		Description:       "andromeda run records, one subject per service",
		Subjects:          []string{bus.SubjectRunsPrefix + "*"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: cfg.RunsPerService,
		MaxBytes:          cfg.RunsMaxBytes,
		MaxMsgSize:        int32(cfg.MaxRunBytes),
		Duplicates:        2 * time.Minute,
		Replicas:          cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("store: stream %s: %w", bus.StreamRuns, err)
	}
	return s, nil
}

// Config returns the store's effective configuration.
func (s *Store) Config() Config { return s.cfg }
