// Package bus connects a node to NATS: by default it embeds a NATS server with
// JetStream in the node's data directory (nothing to install); with a URL it
// joins an external NATS cluster instead. It also names, in one place, every
// subject, stream and bucket the node uses. It does not know what is stored
// there: that is the store package.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says which NATS to use. The zero value is not usable: Dir or URL
// must be set.
type Config struct {
	// URL of an external NATS cluster with JetStream. Empty (the default)
	// embeds a server instead.
	URL string
	// Dir is where the embedded server keeps JetStream data; the node uses
	// <data>/nats.
	Dir string
	// Listen is an optional host:port on which the embedded server also
	// accepts NATS clients (for tools or other nodes). Empty (the default)
	// means no listener at all: the node talks to its embedded server in
	// process. Either way every client authenticates: the node's own
	// connection with a secret made at Open, others with the credentials
	// given to SetClientUsers (see auth.go).
	Listen string
	// Name identifies this node's connection to NATS.
	Name string
	// MaxStore caps the embedded JetStream file storage in bytes. Default 1 GiB.
	MaxStore int64
	// Logger receives the embedded server's warnings and errors (its
	// notices and debug lines at debug level), each format at most a few
	// times a minute, and the bus's own lines about store health and
	// recovery. Default nil: all discarded.
	Logger *slog.Logger
	// HealthInterval is how often the embedded server's store health is
	// checked (a write error seen in its log triggers a check at once).
	// Default 2s.
	HealthInterval time.Duration
	// RecoverFree is how many bytes must be free on the filesystem of Dir
	// before the bus restarts JetStream to clear a write error. Default
	// 8 MiB.
	RecoverFree int64
	// Cluster routes the embedded server into a cluster with other nodes'
	// (cluster.go); Name must then differ on every server of it. The zero
	// value: the node is alone.
	Cluster Cluster
	// Replicas is how many servers keep a copy of the streams the bus
	// makes (events, watch, logs), and what Replicas tells the rest of
	// the node. Default 1.
	Replicas int
}

// Defaults of Config.
const (
	DefaultMaxStore       = 1 << 30
	DefaultHealthInterval = 2 * time.Second
	DefaultRecoverFree    = 8 << 20
)

var (
	// ErrUnavailable is wrapped by every error saying that JetStream cannot
	// store now (a write error such as a full disk, JetStream disabled, or no
	// connection). It is transient: retry later.
	ErrUnavailable = errors.New("storage unavailable")
)

// Bus is an open connection to NATS with JetStream. Close it when done.
type Bus struct {
	Conn *nats.Conn
	JS   jetstream.JetStream

	srv    *server.Server // nil for an external cluster
	jscfg  server.JetStreamConfig
	cfg    Config
	log    *slog.Logger
	health health
	auth   *clientAuth // nil for an external cluster
	routes routeTrouble
}

// Open starts the embedded server (or dials the external one) and returns a
// ready connection. A failure part-way undoes what was started.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.URL == "" && cfg.Dir == "" {
		return nil, errors.New("bus: either a NATS url or a data directory is required")
	}
	if cfg.Name == "" {
		cfg.Name = "andromeda"
	}
	if err := cfg.Cluster.check(); err != nil {
		return nil, err
	}
	if cfg.Cluster.Enabled() && cfg.URL != "" {
		return nil, errors.New("bus: cluster: only the embedded server is routed into a cluster; an external NATS (url) is clustered by its own configuration")
	}
	if cfg.MaxStore <= 0 {
		cfg.MaxStore = DefaultMaxStore
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.RecoverFree <= 0 {
		cfg.RecoverFree = DefaultRecoverFree
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{cfg: cfg, log: log.With(logComponent, "bus")}
	b.health.init()
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1)}
	url := cfg.URL
	if url == "" {
		srv, err := b.startEmbedded(log)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		opts = append(opts, nats.InProcessServer(srv), nats.UserInfo(NodeUser, b.auth.nodeSecret), nats.CustomInboxPrefix(NodeInboxPrefix))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: connect: %w", err)
	}
	b.Conn = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	b.JS = js
	if cfg.Replicas > 1 || cfg.Cluster.Enabled() {
		b.JS = setupJS{js}
	}
	if b.srv != nil && b.cfg.Cluster.Enabled() {
		if err := b.waitClusterReady(ctx); err != nil {
			b.Close()
			return nil, err
		}
	} else if _, err := js.AccountInfo(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream not available: %w", err)
	}
	if b.srv != nil {
		b.health.start(b.watch)
	}
	return b, nil
}

func (b *Bus) startEmbedded(log *slog.Logger) (*server.Server, error) {
	cfg := b.cfg
	dir := filepath.Join(cfg.Dir, "jetstream")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	o := &server.Options{
		ServerName:         cfg.Name,
		JetStream:          true,
		StoreDir:           dir,
		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: 64 << 20,
		NoSigs:             true,
		NoLog:              true,
		DontListen:         cfg.Listen == "",
		MaxPayload:         8 << 20,
	}
	b.auth = newClientAuth()
	o.CustomClientAuthentication = b.auth
	if cfg.Cluster.Enabled() {
		if err := clusterOptions(o, cfg.Cluster); err != nil {
			return nil, fmt.Errorf("bus: cluster: %w", err)
		}
		if cfg.Listen == "" {
			// The server starts routing only once it listens for clients:
			// a port of its own choosing on the loopback, which clients
			// still authenticate on.
			o.DontListen, o.Host, o.Port = false, "127.0.0.1", server.RANDOM_PORT
		}
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: listen %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("bus: listen %q: bad port", cfg.Listen)
		}
		o.Host, o.Port = host, p
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	// NoLog keeps the server from logging to stderr; its lines go to the
	// node's log instead. Fatalf does not exit (the server returns after it)
	// and is remembered to explain a start that fails.
	sl := newServerLog(log, b.serverError)
	srv.SetLoggerV2(sl, log.Enabled(context.Background(), levelNATSDebug), false, false)
	go srv.Start()
	for deadline := time.Now().Add(30 * time.Second); !srv.ReadyForConnections(100 * time.Millisecond); {
		if f := sl.lastFatal(); f != "" {
			srv.Shutdown()
			return nil, fmt.Errorf("bus: embedded server: %s", f)
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return nil, errors.New("bus: embedded server did not become ready within 30s")
		}
	}
	jc := srv.JetStreamConfig()
	if jc == nil {
		srv.Shutdown()
		if f := sl.lastFatal(); f != "" {
			return nil, fmt.Errorf("bus: embedded server: %s", f)
		}
		return nil, errors.New("bus: embedded server started without JetStream")
	}
	// JetStreamConfig reports the directory with "jetstream" appended;
	// EnableJetStream appends it again.
	b.jscfg = *jc
	b.jscfg.StoreDir = dir
	return srv, nil
}

// Embedded reports whether this bus runs its own NATS server.
func (b *Bus) Embedded() bool { return b.srv != nil }

// Replicas is how many copies of each stream and bucket the node keeps:
// Config.Replicas.
func (b *Bus) Replicas() int { return b.cfg.Replicas }

// ClientURL is where other clients reach the embedded server, or "" when it
// does not listen.
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.srv.Addr() == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// Close drains the connection and shuts the embedded server down. Safe to
// call more than once.
func (b *Bus) Close() error {
	b.health.stop()
	var err error
	if b.Conn != nil && !b.Conn.IsClosed() {
		err = b.Conn.Drain()
		deadline := time.Now().Add(5 * time.Second)
		for !b.Conn.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		b.Conn.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
	return err
}
