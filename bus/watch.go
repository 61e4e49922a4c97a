package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The node's stream of what happens (GET /v1/watch) and the stream of
// what services write to their logs (GET /v1/services/{name}/logs).
const (
	// StreamWatch is the stream of watch events (api.WatchEvent), one
	// subject per service: andromeda.watch.<service>. Its sequence is
	// the event's id. Bounded by age and bytes.
	StreamWatch = "ANDROMEDA_WATCH"
	// SubjectWatchPrefix prefixes watch subjects.
	SubjectWatchPrefix = "andromeda.watch."
	// StreamLogs is the stream of the lines services log, one subject per
	// service and run: andromeda.logs.<service>.<run id>, with
	// LogsNoRun for the lines of a worker that no run wrote. Bounded by
	// age and bytes, and per subject (that is, per run).
	StreamLogs = "ANDROMEDA_LOGS"
	// SubjectLogsPrefix prefixes log subjects.
	SubjectLogsPrefix = "andromeda.logs."
	// LogsNoRun is the run token of the lines no run wrote.
	LogsNoRun = "_worker"
	// HeaderOwner carries the owner of the service a watch event or log
	// line is about, so that a submitter is shown only its own.
	HeaderOwner = "Andromeda-Owner"
)

// WatchSubject is the subject the watch events of service go on.
func WatchSubject(service string) string { return SubjectWatchPrefix + service }

// LogSubject is the subject the lines of service's run go on; run ""
// is LogsNoRun, and "*" matches every run.
func LogSubject(service, run string) string {
	if run == "" {
		run = LogsNoRun
	}
	return SubjectLogsPrefix + service + "." + run
}

// LogsConfig bounds the watch and the logs streams.
type LogsConfig struct {
	// MaxAge is how long an entry is kept. Default 24 hours.
	MaxAge time.Duration
	// MaxBytes caps the stream; the oldest entries go first. Default
	// 32 MiB for the watch stream, 96 MiB for the logs stream (the embedded
	// store reserves every stream's MaxBytes from its 1 GiB).
	MaxBytes int64
	// MaxPerSubject caps the entries of one subject (a service's events,
	// a run's lines); the oldest go first. Default: none for the watch
	// stream, DefaultLogsPerRun for the logs stream.
	MaxPerSubject int64
}

// Defaults of LogsConfig.
const (
	DefaultWatchMaxAge   = 24 * time.Hour
	DefaultWatchMaxBytes = 32 << 20
	DefaultLogsMaxAge    = 24 * time.Hour
	DefaultLogsMaxBytes  = 96 << 20
	// DefaultLogsPerRun caps the lines kept of one run, markers
	// included: above what the node's per-run limits let through.
	DefaultLogsPerRun = 16384
)

// WatchStream creates or updates the watch stream with cfg's bounds, zero
// fields taking their defaults.
func (b *Bus) WatchStream(ctx context.Context, cfg LogsConfig) (jetstream.Stream, error) {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultWatchMaxAge
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultWatchMaxBytes
	}
	if cfg.MaxPerSubject == 0 {
		cfg.MaxPerSubject = -1
	}
	return b.boundedStream(ctx, StreamWatch, SubjectWatchPrefix+">", cfg)
}

// LogsStream creates or updates the logs stream with cfg's bounds, zero
// fields taking their defaults.
func (b *Bus) LogsStream(ctx context.Context, cfg LogsConfig) (jetstream.Stream, error) {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultLogsMaxAge
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultLogsMaxBytes
	}
	if cfg.MaxPerSubject == 0 {
		cfg.MaxPerSubject = DefaultLogsPerRun
	}
	return b.boundedStream(ctx, StreamLogs, SubjectLogsPrefix+">", cfg)
}

func (b *Bus) boundedStream(ctx context.Context, name, subjects string, cfg LogsConfig) (jetstream.Stream, error) {
	s, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              name,
		Subjects:          []string{subjects},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            cfg.MaxAge,
		MaxBytes:          cfg.MaxBytes,
		MaxMsgsPerSubject: cfg.MaxPerSubject,
		MaxMsgSize:        64 << 10,
		Replicas:          b.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", name, err)
	}
	return s, nil
}
