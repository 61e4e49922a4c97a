// Package pgbridge turns PostgreSQL notifications (LISTEN/NOTIFY) into
// published messages: for each configured (DSN, channel) it holds one
// connection that LISTENs on the channel, reconnecting with backoff when
// it drops, and hands every notification it receives to a publish
// function as a JSON Message with an id that is stable for that one
// delivery, retrying until the function accepts it.
//
// It knows nothing of the node, the bus or the rules of topics: the caller
// checks those and publishes. It cannot make NOTIFY durable: Postgres
// keeps no notification for a listener that is not connected, so what is
// notified while the bridge is disconnected is lost by Postgres itself;
// what the bridge has received is published, or held until Close.
package pgbridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Channel is one bridge: notifications on Channel at the server DSN names
// are published on Topic.
type Channel struct {
	// DSN is a libpq connection string, URL (postgres://user:pass@host/db)
	// or keyword/value (host=... password=...), as pgx parses it. Its
	// password never appears in logs, Status or errors.
	DSN string
	// Channel is the name LISTENed on, matched exactly as pg_notify names
	// it (quoted, so case and punctuation are kept; an unquoted NOTIFY
	// folds its channel to lower case). See CheckChannel.
	Channel string
	// Topic is where its messages are published; the publish function
	// checks it.
	Topic string
}

// PublishFunc publishes message on topic. msgID is the same for every
// attempt at one delivery and different for every other, so a publisher
// that deduplicates by it (JetStream's Nats-Msg-Id) stores each delivery
// once however often it is retried. An error wrapping ErrRejected means
// the message will never be accepted: the bridge logs it and moves on;
// any other error is retried. It must be safe for concurrent use (one
// call at a time per channel).
type PublishFunc func(ctx context.Context, topic string, message json.RawMessage, msgID string) error

// ErrRejected, wrapped in a PublishFunc's error, says that retrying is
// pointless (the message is too large for the bus, say).
var ErrRejected = errors.New("rejected for good")

// Message is what one notification becomes.
type Message struct {
	// Channel is the channel it was notified on.
	Channel string `json:"channel"`
	// Payload is the notification's payload: the JSON value itself when
	// the payload is valid JSON, else the payload as a JSON string (an
	// empty payload is "").
	Payload json.RawMessage `json:"payload"`
	// PID is the process id of the notifying backend.
	PID uint32 `json:"pid"`
}

// NewMessage builds the message of one notification.
func NewMessage(channel, payload string, pid uint32) json.RawMessage {
	m := Message{Channel: channel, PID: pid}
	if payload != "" && json.Valid([]byte(payload)) {
		m.Payload = json.RawMessage(payload)
	} else {
		m.Payload, _ = json.Marshal(payload) // a string cannot fail
	}
	b, err := json.Marshal(m)
	if err != nil { // Payload is valid JSON and Channel a string
		panic(fmt.Sprintf("pgbridge: marshal message: %v", err))
	}
	return b
}

// State is where a channel's connection is.
type State string

// The states of a channel: Connecting until it first listens, Listening
// while its connection is up, Reconnecting after the connection dropped or
// could not be made, Stopped after Close.
const (
	Connecting   State = "connecting"
	Listening    State = "listening"
	Reconnecting State = "reconnecting"
	Stopped      State = "stopped"
)

// Status is one channel's state and counters.
type Status struct {
	Channel string `json:"channel"`
	Topic   string `json:"topic"`
	// Server is the DSN with its password replaced by xxxxx.
	Server string `json:"server"`
	State  State  `json:"state"`
	// Since is when State began.
	Since time.Time `json:"since"`
	// LastError is the last connection error, kept after the connection
	// is back; "" when there was none.
	LastError string `json:"last_error,omitempty"`
	// PublishError is the last error of the publish function, "" once a
	// publish succeeds again.
	PublishError string `json:"publish_error,omitempty"`
	// Reconnects counts the times the channel listened again after its
	// connection was lost.
	Reconnects uint64 `json:"reconnects"`
	// Received counts notifications received from Postgres, Published
	// those the publish function accepted, Rejected those it refused for
	// good (ErrRejected). Pending is received and neither published nor
	// rejected: waiting, being published, or (after Close) dropped.
	Received  uint64 `json:"received"`
	Published uint64 `json:"published"`
	Rejected  uint64 `json:"rejected"`
	Pending   int    `json:"pending"`
}

// The bridge's tunings; tests shorten them.
const (
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts, and between attempts at publishing one message: it starts
	// at MinBackoff, doubles up to MaxBackoff, and each wait is drawn from
	// its upper half (jitter). A connection that listened resets it.
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 30 * time.Second
	// MaxPending bounds the notifications received and not yet published,
	// per channel; beyond it the bridge stops reading, and Postgres holds
	// the rest in its notification queue.
	MaxPending = 10_000
	// probeIdle is how long a connection may be quiet before it is probed
	// with an empty query, so a connection lost without a word is noticed.
	probeIdle = 30 * time.Second
	// connectTimeout bounds one connection attempt and its LISTEN.
	connectTimeout = 10 * time.Second
	// drainTimeout is how long Close keeps publishing what was received.
	drainTimeout = 5 * time.Second
)

// Bridge holds one connection per Channel. Create it with New, start it
// with Start, stop it with Close; Status is safe for concurrent use.
type Bridge struct {
	publish PublishFunc
	log     *slog.Logger
	chans   []*channel
	// instance tells this bridge's message ids from those of an earlier
	// one (a restarted node) that the bus may still remember.
	instance string

	minBackoff, maxBackoff, probeIdle, drainTimeout time.Duration

	readCtx, pubCtx       context.Context
	cancelRead, cancelPub context.CancelFunc
	wg                    sync.WaitGroup
	started               bool
	closeOnce             sync.Once
}

// New checks every channel (CheckDSN, CheckChannel; an empty Topic is an
// error) and returns a bridge that has not connected yet. A nil log
// discards.
func New(chs []Channel, publish PublishFunc, log *slog.Logger) (*Bridge, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var inst [6]byte
	rand.Read(inst[:])
	b := &Bridge{
		publish: publish, log: log, instance: hex.EncodeToString(inst[:]),
		minBackoff: MinBackoff, maxBackoff: MaxBackoff, probeIdle: probeIdle, drainTimeout: drainTimeout,
	}
	var errs []error
	for i, c := range chs {
		cfg, err := parseDSN(c.DSN)
		if err != nil {
			errs = append(errs, fmt.Errorf("channel %d: dsn: %w", i, err))
		}
		if err := CheckChannel(c.Channel); err != nil {
			errs = append(errs, fmt.Errorf("channel %d: channel: %w", i, err))
		}
		if c.Topic == "" {
			errs = append(errs, fmt.Errorf("channel %d: topic: must not be empty", i))
		}
		if err != nil {
			continue
		}
		if _, ok := cfg.RuntimeParams["application_name"]; !ok {
			cfg.RuntimeParams["application_name"] = "andromeda-pgbridge"
		}
		ch := &channel{
			b: b, idx: i, def: c, cfg: cfg, server: Redact(c.DSN),
			queue: make(chan delivery, MaxPending),
			log:   log.With("channel", c.Channel, "topic", c.Topic, "server", Redact(c.DSN)),
		}
		if cfg.Password != "" {
			ch.secrets = append(ch.secrets, cfg.Password)
		}
		ch.st = Status{Channel: c.Channel, Topic: c.Topic, Server: ch.server, State: Connecting, Since: time.Now()}
		b.chans = append(b.chans, ch)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b, nil
}

// Start connects every channel, each on goroutines of its own, and returns
// at once: a server that cannot be reached is retried, never an error.
// Call it once.
func (b *Bridge) Start() {
	b.readCtx, b.cancelRead = context.WithCancel(context.Background())
	b.pubCtx, b.cancelPub = context.WithCancel(context.Background())
	b.started = true
	for _, c := range b.chans {
		b.wg.Go(func() { c.read(b.readCtx) })
		b.wg.Go(func() { c.pump(b.pubCtx) })
	}
}

// Close stops reading notifications, keeps publishing those received for
// a few seconds more (publishing stops early when the publish function
// keeps failing), closes the connections and waits for the goroutines.
// Safe to call more than once.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		if !b.started {
			return
		}
		b.cancelRead()
		t := time.AfterFunc(b.drainTimeout, b.cancelPub)
		b.wg.Wait()
		t.Stop()
		b.cancelPub()
	})
	return nil
}

// Status returns every channel's status, in the order of New's channels.
func (b *Bridge) Status() []Status {
	out := make([]Status, len(b.chans))
	for i, c := range b.chans {
		c.mu.Lock()
		out[i] = c.st
		out[i].Pending = int(c.st.Received - c.st.Published - c.st.Rejected)
		c.mu.Unlock()
	}
	return out
}

// delivery is one notification received, with its message and id.
type delivery struct {
	id  string
	msg json.RawMessage
}

// channel is one (DSN, channel): read connects and listens, and queues
// what arrives; pump publishes it.
type channel struct {
	b       *Bridge
	idx     int
	def     Channel
	cfg     *pgx.ConnConfig
	server  string   // the DSN redacted
	secrets []string // what to scrub from error texts
	log     *slog.Logger
	queue   chan delivery

	mu       sync.Mutex
	st       Status
	listened bool   // at least once
	logged   string // the state and error last logged
}

// read connects, listens and receives until ctx ends, reconnecting with
// backoff; it closes the queue when it returns.
func (c *channel) read(ctx context.Context) {
	defer close(c.queue)
	defer func() {
		c.mu.Lock()
		c.st.State, c.st.Since = Stopped, time.Now()
		c.mu.Unlock()
	}()
	backoff := c.b.minBackoff
	for gen := uint64(1); ; gen++ {
		listened, err := c.session(ctx, gen)
		if ctx.Err() != nil {
			return
		}
		if listened {
			backoff = c.b.minBackoff
		}
		c.failed(err)
		if !sleep(ctx, jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, c.b.maxBackoff)
	}
}

// session is one connection: connect, LISTEN, receive until it fails.
// listened says whether it got as far as listening.
func (c *channel) session(ctx context.Context, gen uint64) (listened bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := pgx.ConnectConfig(cctx, c.cfg.Copy())
	if err == nil {
		if _, err = conn.Exec(cctx, "LISTEN "+QuoteIdentifier(c.def.Channel)); err != nil {
			conn.Close(context.Background())
		}
	}
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(cctx)
		cancel()
	}()
	c.listening()
	var seq uint64
	for {
		wctx, cancel := context.WithTimeout(ctx, c.b.probeIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil { // may come with an error: the notification still counts
			seq++
			d := delivery{
				id:  fmt.Sprintf("pg-%s-%d-%d-%d-%d", c.b.instance, c.idx, gen, seq, n.PID),
				msg: NewMessage(n.Channel, n.Payload, n.PID),
			}
			c.mu.Lock()
			c.st.Received++
			c.mu.Unlock()
			select {
			case c.queue <- d:
			case <-ctx.Done():
				return true, ctx.Err()
			}
		}
		switch {
		case ctx.Err() != nil:
			return true, ctx.Err()
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			pctx, cancel := context.WithTimeout(ctx, connectTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return true, fmt.Errorf("probe: %w", err)
			}
		default:
			return true, fmt.Errorf("receive: %w", err)
		}
	}
}

// listening records that the connection listens, and logs it.
func (c *channel) listening() {
	c.mu.Lock()
	if c.listened {
		c.st.Reconnects++
	}
	c.listened = true
	c.st.State, c.st.Since = Listening, time.Now()
	reconnects := c.st.Reconnects
	c.logged = string(Listening)
	c.mu.Unlock()
	c.log.Info("postgres bridge listening", "reconnects", reconnects)
}

// failed records a connection that failed or dropped, and logs it when
// the state or the error is new.
func (c *channel) failed(err error) {
	text := c.scrub(err.Error())
	c.mu.Lock()
	was := c.st.State
	if was != Reconnecting {
		c.st.State, c.st.Since = Reconnecting, time.Now()
	}
	c.st.LastError = text
	key := string(Reconnecting) + "\x00" + text
	log := c.logged != key
	c.logged = key
	c.mu.Unlock()
	if log {
		c.log.Warn("postgres bridge reconnecting", "was", string(was), "error", text)
	}
}

// pump publishes what read queues until the queue closes or ctx ends.
func (c *channel) pump(ctx context.Context) {
	for d := range c.queue {
		if !c.deliver(ctx, d) {
			// Stopping with messages received and not published.
			lost := 1 + len(c.queue)
			c.log.Error("postgres bridge stopped with notifications received but not published", "count", lost)
			for range c.queue { // read stops too: drain until it closes
			}
			return
		}
	}
}

// deliver publishes d, retrying with backoff until it is accepted or
// refused for good (true), or ctx ends (false).
func (c *channel) deliver(ctx context.Context, d delivery) bool {
	backoff := c.b.minBackoff
	for {
		err := c.b.publish(ctx, c.def.Topic, d.msg, d.id)
		c.mu.Lock()
		switch {
		case err == nil:
			c.st.Published++
			c.st.PublishError = ""
		case errors.Is(err, ErrRejected):
			c.st.Rejected++
		default:
			first := c.st.PublishError == ""
			c.st.PublishError = c.scrub(err.Error())
			if first {
				c.log.Warn("postgres bridge cannot publish; retrying", "id", d.id, "error", c.st.PublishError)
			}
		}
		c.mu.Unlock()
		if err == nil {
			return true
		}
		if errors.Is(err, ErrRejected) {
			c.log.Error("postgres bridge notification refused by the bus; dropped", "id", d.id, "error", c.scrub(err.Error()))
			return true
		}
		if ctx.Err() != nil || !sleep(ctx, jitter(backoff)) {
			return false
		}
		backoff = min(2*backoff, c.b.maxBackoff)
	}
}

// scrub removes the DSN's password from an error text.
func (c *channel) scrub(s string) string {
	for _, p := range c.secrets {
		s = strings.ReplaceAll(s, p, "xxxxx")
	}
	return s
}

// QuoteIdentifier quotes name as a Postgres identifier: in double quotes,
// each double quote doubled, so LISTEN takes it verbatim.
func QuoteIdentifier(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// maxIdentifier is the longest identifier Postgres keeps (NAMEDATALEN-1
// bytes); pg_notify refuses longer channel names.
const maxIdentifier = 63

// CheckChannel reports whether name can be a channel: 1 to 63 bytes of
// UTF-8 without control characters. Any such name works: it is quoted.
func CheckChannel(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case len(name) > maxIdentifier:
		return fmt.Errorf("a Postgres identifier has at most %d bytes, got %d", maxIdentifier, len(name))
	case !utf8.ValidString(name):
		return errors.New("must be UTF-8")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("must not hold control characters")
	}
	return nil
}

// CheckDSN reports whether pgx can parse dsn, in words that never hold its
// password.
func CheckDSN(dsn string) error {
	_, err := parseDSN(dsn)
	return err
}

func parseDSN(dsn string) (*pgx.ConnConfig, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("must not be empty")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts what it recognises; the text is replaced in any case,
		// since an unparsable string may hide a password where pgx does not
		// look.
		return nil, fmt.Errorf("cannot be parsed as a libpq connection string or URL (%s)", Redact(dsn))
	}
	return cfg, nil
}

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter draws a wait from the upper half of d.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + mathrand.N(d/2)
}
