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
	"path/filepath"
	"strings"
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
	// LedgerTTL is how long an execution's record is kept after its last
	// change. Default 7 days.
	LedgerTTL time.Duration
	// Replicas for streams and buckets (1 for a single node). Default 1.
	Replicas int
	// Node names the node in the run records it stores (Run.Node).
	// Default "".
	Node string
	// Timeout bounds Open as a whole and each registry listing (a read of
	// damaged data fails with a clear error instead of waiting forever).
	// Default 10 s.
	Timeout time.Duration
	// Repair opens a damaged store: records of the registry or the tokens
	// that cannot be read or decoded are skipped and listed in the
	// Recovery report, and a registry that lost records is accepted as it
	// now is. Default false: Open fails with ErrDamaged instead.
	Repair bool
	// Files is what PrepareFiles found in the embedded server's block
	// files before the server started; Open folds it into the Recovery
	// report. Zero with an external NATS.
	Files FileReport
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		RunsPerService: 1000,
		MaxRunBytes:    64 << 10,
		RunsMaxBytes:   512 << 20,
		MaxStateBytes:  1 << 20,
		LedgerTTL:      7 * 24 * time.Hour,
		Replicas:       1,
		Timeout:        10 * time.Second,
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
	if c.LedgerTTL <= 0 {
		c.LedgerTTL = d.LedgerTTL
	}
	if c.Replicas <= 0 {
		c.Replicas = d.Replicas
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
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
	// ErrDamaged is returned when stored data the node cannot do without
	// (the registry, tokens, state, artifacts) cannot be read, and the
	// store was not opened with Repair.
	ErrDamaged = errors.New("store damaged")
)

// Store is the node's persistent state on JetStream. Safe for concurrent use.
type Store struct {
	cfg       Config
	js        jetstream.JetStream
	forwards  jetstream.Stream    // bus.StreamForwards
	async     jetstream.JetStream // run records: async publish, own ack window (runs.go)
	services  jetstream.KeyValue
	state     jetstream.KeyValue
	tokens    jetstream.KeyValue
	pending   jetstream.KeyValue
	meta      jetstream.KeyValue
	ledger    jetstream.KeyValue // action executions (ledger.go)
	open      jetstream.KeyValue // the executions that have not ended
	registry  jetstream.Stream   // the stream under services
	artifacts jetstream.ObjectStore
	runs      jetstream.Stream
	recovery  Report

	revocations      jetstream.KeyValue // revocations of delegations (revocations.go)
	flows            jetstream.KeyValue // flows applied (flows.go)
	flowContext      jetstream.KeyValue // flows' contexts (flows.go)
	flowQueue        jetstream.Stream   // messages waiting for their flow run (flowruns.go)
	flowRuns         jetstream.Stream   // flow run records (flowruns.go)
	flowStream       jetstream.Stream
	revocationStream jetstream.Stream
}

// Open creates (or updates) the streams and buckets, checks what they hold
// and returns the store. The bus stays owned by the caller. Open as a whole
// takes at most Config.Timeout. When the registry, the tokens, the state or
// the artifacts lost records or hold records that cannot be read, Open
// fails with an error wrapping ErrDamaged that says what is damaged and how
// to go on, unless Config.Repair is set; either way Recovery says what
// JetStream recovered and dropped, per stream.
func Open(ctx context.Context, b *bus.Bus, cfg Config) (*Store, error) {
	cfg.fill()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	s := &Store{cfg: cfg, js: b.JS}
	async, err := jetstream.New(b.Conn, jetstream.WithPublishAsyncMaxPending(runWindow), jetstream.WithPublishAsyncTimeout(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("store: jetstream: %w", err)
	}
	s.async = async
	if err := s.create(ctx); err != nil {
		return nil, s.deadline(ctx, err)
	}
	rep, err := s.recover(ctx)
	if err != nil {
		return nil, s.deadline(ctx, err)
	}
	rep.Took = time.Since(start)
	s.recovery = rep
	if damaged := rep.damaged(); len(damaged) > 0 && !cfg.Repair {
		data := "<data dir>"
		if cfg.Files.Dir != "" {
			data = filepath.Dir(cfg.Files.Dir)
		}
		return nil, damagedError(strings.Join(damaged, "; "), data)
	}
	return s, nil
}

// create creates or updates every stream and bucket.
func (s *Store) create(ctx context.Context) error {
	cfg := s.cfg
	var err error
	kv := func(name, desc string) jetstream.KeyValue {
		if err != nil {
			return nil
		}
		var v jetstream.KeyValue
		v, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
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
	s.meta = kv(bucketMeta, "andromeda store bookkeeping: what the registry held at its last write")
	s.open = kv(openBucket, "andromeda action executions that have not ended")
	if err != nil {
		return err
	}
	s.ledger, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: ledgerBucket, Description: "andromeda action executions (the ledger)", History: 1,
		Storage: jetstream.FileStorage, Replicas: cfg.Replicas, TTL: cfg.LedgerTTL,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", ledgerBucket, err)
	}
	if err := s.createRevocations(ctx); err != nil {
		return err
	}
	if err := s.createFlows(ctx); err != nil {
		return err
	}
	if err := s.createFlowStreams(ctx); err != nil {
		return err
	}
	if err := s.createForwards(ctx); err != nil {
		return err
	}
	if s.registry, err = s.js.Stream(ctx, kvStream(bus.BucketServices)); err != nil {
		return fmt.Errorf("store: bucket %s: %w", bus.BucketServices, err)
	}
	s.artifacts, err = s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: bus.ObjectArtifacts, Description: "andromeda service archives by digest",
		Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: object store %s: %w", bus.ObjectArtifacts, err)
	}
	s.runs, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
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
		return fmt.Errorf("store: stream %s: %w", bus.StreamRuns, err)
	}
	return nil
}

// deadline says so when err comes from ctx running out.
func (s *Store) deadline(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return fmt.Errorf("%w (JetStream gave no answer within %v: the node may be overloaded, or its data damaged; see `andromeda store check`)", err, s.cfg.Timeout)
	}
	return err
}

// bounded gives ctx the store's timeout unless it has an earlier deadline.
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.cfg.Timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// Config returns the store's effective configuration.
func (s *Store) Config() Config { return s.cfg }
