package browser

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Protocol is the version of the page's wire protocol this package speaks.
const Protocol = 1

// RoleRuntime is the role a token must grant by default (Config.Role).
const RoleRuntime = "runtime"

// Language is the one language a browser runtime runs.
const Language = "javascript"

var (
	// ErrGone is the error of an Invoke whose runtime is not connected, or
	// whose page went away (closed, reloaded, lost its connection, was
	// replaced) before it answered. The message may or may not have run
	// on the page: the caller queues it until the runtime is back (Wait)
	// or sends it elsewhere.
	ErrGone = errors.New("the browser runtime is not connected")
	// ErrTooLarge is the error of an Invoke whose input or module code
	// does not fit in one message (Config.MaxMessage).
	ErrTooLarge = errors.New("too large for one message")
	// ErrInvalid is the error of an Invoke with a module or input the page
	// cannot be given (a bad module id, an input that is not a JSON
	// object).
	ErrInvalid = errors.New("invalid invocation")
	// ErrClosed is the error of an Invoke or Wait after Close.
	ErrClosed = errors.New("the browser runtime hub is closed")
)

// Error is the answer of a page whose module did not give an output: it
// threw or rejected (Code "error", or "oom" for the engine's own
// allocation failure), did not load ("init": a syntax error, no handler,
// a require), could not encode its output, or was given an input it
// could not read ("bad_input"). Message and Stack are the page's, as the
// Node.js shim words them.
type Error struct {
	Runtime string // the runtime's id
	Module  string // Module.ID
	Code    string
	Message string
	Stack   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("module %s on browser runtime %s: %s", e.Module, e.Runtime, e.Message)
}

// Module is JavaScript code a page runs: CommonJS source text, as the
// Node.js shim loads from a file (module.exports = handler, or exports
// handle(input[, ctx]) or decide(ctx), sync or async).
type Module struct {
	// ID names the module in errors and logs (the flow's module id):
	// 1 to 128 of [A-Za-z0-9._:/-]. Required.
	ID string
	// Code is the module's source. Required.
	Code string
	// Config, when set, is a JSON object: the module's own configuration,
	// which the page lays the input's config over, key by key (the
	// input's wins), before calling the handler.
	Config json.RawMessage
}

// key is what the page knows the module by: a digest of its id, code and
// config, so that a module whose code or config changed is loaded anew.
func (m Module) key() string {
	h := sha256.New()
	io.WriteString(h, m.ID)
	h.Write([]byte{0})
	io.WriteString(h, m.Code)
	h.Write([]byte{0})
	h.Write(m.Config)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

var (
	moduleIDRE  = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)
	runtimeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

func (m Module) check() error {
	if !moduleIDRE.MatchString(m.ID) {
		return fmt.Errorf("%w: module id %q is not 1 to 128 of [A-Za-z0-9._:/-]", ErrInvalid, m.ID)
	}
	if m.Code == "" {
		return fmt.Errorf("%w: module %s has no code", ErrInvalid, m.ID)
	}
	if len(m.Config) > 0 && !isObject(m.Config) {
		return fmt.Errorf("%w: module %s: config must be a JSON object", ErrInvalid, m.ID)
	}
	return nil
}

// isObject reports whether b is one valid JSON object.
func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// Info describes one runtime, connected or remembered (Hub.Runtimes).
type Info struct {
	// ID is the runtime's id: the page's, kept in its tab's session
	// storage (or given in its address) so that a reload or a reconnect
	// is the same runtime.
	ID string `json:"id"`
	// Name and Version are what the page announced: a name for people
	// and the browser's user agent.
	Name      string   `json:"name"`
	Version   string   `json:"version"`
	Languages []string `json:"languages"`
	Protocol  int      `json:"protocol"`
	// Connected says a page is connected now; Since is when it connected,
	// or, when it is not, when it went away.
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	// Remote is the address the page connected from.
	Remote string `json:"remote,omitempty"`
	// Modules counts the modules loaded on the connected page.
	Modules int `json:"modules"`
	// InFlight counts the invocations in flight on the runtime, and those
	// being sent.
	InFlight int `json:"in_flight"`
	// Reason says why the last page went away, when it did.
	Reason string `json:"reason,omitempty"`
}

// Config configures a Hub. Zero fields take the DefaultConfig values.
type Config struct {
	// Authorize checks the token a page sends as its first message and
	// returns the role it grants; an error refuses the page (its text is
	// logged, not shown to the page). Required. It may be called
	// concurrently.
	Authorize func(ctx context.Context, token string) (role string, err error)
	// Role is the role a token must grant. Default RoleRuntime.
	Role string
	// Path is where the node mounts the hub: the page is served at Path
	// (and Path/), its module worker at Path/worker.js and the WebSocket
	// at Path/ws. Default "/runtime/browser".
	Path string
	// MaxInFlight is the most invocations in flight on one runtime at
	// once; Invoke waits for a slot (or its context). Default 16.
	MaxInFlight int
	// MaxMessage is the largest WebSocket message, in bytes, either side
	// may send: a page sending a larger one is disconnected, an input or
	// module that would not fit is ErrTooLarge, an output that would not
	// fit is an Error. Default 8 MiB (the runtime protocol's max_line).
	MaxMessage int64
	// MaxRuntimes bounds the runtimes the hub knows, connected or
	// remembered; a page with a new id beyond it is refused while every
	// one is connected, else the longest gone is forgotten. Default 256.
	MaxRuntimes int
	// Forget is how long a runtime whose page went away is remembered
	// (listed, and the same runtime when it comes back). Default 1 hour.
	Forget time.Duration
	// HandshakeTimeout is how long a page has, from the upgrade, to send
	// its token and announce itself. Default 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one message written to a page; a page that
	// reads slower is disconnected. Default 10 s.
	WriteTimeout time.Duration
	// PingInterval is how often the hub pings a page; a page that does not
	// answer within one interval is disconnected, so its messages in
	// flight fail with ErrGone. Default 10 s; negative: never.
	PingInterval time.Duration
	// CancelGrace is how long the page waits for a cancelled invocation
	// to stop before it restarts its module worker (ending every
	// invocation in flight there). Default 250 ms, the process driver's.
	CancelGrace time.Duration
	// OriginPatterns are the other origins (host patterns) whose pages may
	// open the WebSocket; the page's own origin always may. Default none.
	OriginPatterns []string
	// Logger gets the hub's log lines, and the modules' ctx.log lines at
	// their level. Default: discarded.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults (without Authorize, which has none).
func DefaultConfig() Config {
	return Config{
		Role:             RoleRuntime,
		Path:             "/runtime/browser",
		MaxInFlight:      16,
		MaxMessage:       8 << 20,
		MaxRuntimes:      256,
		Forget:           time.Hour,
		HandshakeTimeout: 10 * time.Second,
		WriteTimeout:     10 * time.Second,
		PingInterval:     10 * time.Second,
		CancelGrace:      250 * time.Millisecond,
	}
}

// withDefaults returns c with DefaultConfig's values for its zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Role == "" {
		c.Role = d.Role
	}
	if c.Path == "" {
		c.Path = d.Path
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = d.MaxMessage
	}
	if c.MaxRuntimes == 0 {
		c.MaxRuntimes = d.MaxRuntimes
	}
	if c.Forget == 0 {
		c.Forget = d.Forget
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = d.PingInterval
	}
	if c.CancelGrace == 0 {
		c.CancelGrace = d.CancelGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every field of c that is out of range, after defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Authorize == nil {
		errs = append(errs, errors.New("authorize: required"))
	}
	if !strings.HasPrefix(c.Path, "/") || strings.HasSuffix(c.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q: must start with / and not end with one", c.Path))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("max in flight %d: must be at least 1", c.MaxInFlight))
	}
	if c.MaxMessage < 64<<10 {
		errs = append(errs, fmt.Errorf("max message %d: must be at least 64 KiB", c.MaxMessage))
	}
	if c.MaxRuntimes < 1 {
		errs = append(errs, fmt.Errorf("max runtimes %d: must be at least 1", c.MaxRuntimes))
	}
	for name, d := range map[string]time.Duration{"forget": c.Forget, "handshake timeout": c.HandshakeTimeout,
		"write timeout": c.WriteTimeout, "cancel grace": c.CancelGrace} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s: must not be negative", name, d))
		}
	}
	return errors.Join(errs...)
}

// Log keys.
const (
	logRuntime = "runtime"
	logModule  = "module"
	logRemote  = "remote"
	logErr     = "err"
)

// A Hub serves the browser runtime's page and the WebSocket its pages
// connect to, keeps the runtimes they announce, and invokes modules on
// them. The node mounts it at Config.Path. Safe for concurrent use.
type Hub struct {
	cfg    Config
	log    *slog.Logger
	page   asset
	worker asset
	prefix string // of the message ids: ids stay unique across the hub's restarts
	seq    atomic.Uint64
	ctx    context.Context // ends at Close
	stop   context.CancelFunc

	mu       sync.Mutex
	runtimes map[string]*runtime
	changed  chan struct{} // closed and replaced when a runtime connects or goes
	closed   bool
	serving  sync.WaitGroup // the WebSocket connections' goroutines
}

// runtime is one runtime id's state, kept across its pages' connections.
type runtime struct {
	id    string
	slots chan struct{} // one per invocation in flight

	// Under Hub.mu.
	info Info
	sess *session // nil while no page is connected
}

var _ http.Handler = (*Hub)(nil)

// New returns a Hub for cfg, whose zero fields take their defaults. It
// starts nothing: connections come through ServeHTTP. Close ends them.
func New(cfg Config) (*Hub, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("browser runtime: %w", err)
	}
	page, worker, err := assets()
	if err != nil {
		return nil, fmt.Errorf("browser runtime: %w", err)
	}
	var p [6]byte
	rand.Read(p[:])
	ctx, stop := context.WithCancel(context.Background())
	return &Hub{
		cfg: cfg, log: cfg.Logger, page: page, worker: worker,
		prefix: hex.EncodeToString(p[:]), ctx: ctx, stop: stop,
		runtimes: map[string]*runtime{}, changed: make(chan struct{}),
	}, nil
}

// ServeHTTP serves GET Config.Path (the page), Path/worker.js (the
// page's module worker) and Path/ws (the WebSocket); anything else is
// 404, and a method other than GET or HEAD 405.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var a *asset
	switch r.URL.Path {
	case h.cfg.Path, h.cfg.Path + "/":
		a = &h.page
	case h.cfg.Path + "/worker.js":
		a = &h.worker
	case h.cfg.Path + "/ws":
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && (r.Method != http.MethodHead || a == nil) {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if a != nil {
		a.serve(w, r)
		return
	}
	h.serveWS(w, r)
}

// Runtimes lists the runtimes the hub knows, by id: those connected and
// those that went away less than Config.Forget ago.
func (h *Hub) Runtimes() []Info {
	h.mu.Lock()
	h.forget(time.Now())
	infos := make([]Info, 0, len(h.runtimes))
	sessions := make([]*session, 0, len(h.runtimes))
	for _, rt := range h.runtimes {
		info := rt.info
		info.Languages = slices.Clone(info.Languages)
		info.InFlight = len(rt.slots)
		infos = append(infos, info)
		sessions = append(sessions, rt.sess)
	}
	h.mu.Unlock()
	for i, s := range sessions {
		if s != nil {
			infos[i].Modules = s.modules()
		}
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.ID, b.ID) })
	return infos
}

// Connected says a page of runtime id is connected now.
func (h *Hub) Connected(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	rt := h.runtimes[id]
	return !h.closed && rt != nil && rt.sess != nil
}

// Wait returns nil once a page of runtime id is connected (at once if one
// is), or ctx's error, or ErrClosed when the hub closes.
func (h *Hub) Wait(ctx context.Context, id string) error {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return ErrClosed
		}
		rt := h.runtimes[id]
		connected := rt != nil && rt.sess != nil
		changed := h.changed
		h.mu.Unlock()
		if connected {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Invoke runs module m on runtime id with input (the contract's Input, a
// JSON object) and returns the module's output (the contract's Output, a
// JSON object), as the page answered it. The module is loaded on the page
// first if it is not yet (by a digest of its id, code and config). ctx
// bounds the invocation: its deadline goes to the handler (ctx.deadline),
// and when ctx ends first the page is told to cancel and Invoke returns
// ctx's error. A module that fails is an *Error; a runtime that is not
// connected, or whose page goes away before answering, is ErrGone. When
// Config.MaxInFlight invocations are in flight on the runtime, Invoke
// waits for one to end.
func (h *Hub) Invoke(ctx context.Context, id string, m Module, input []byte) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if !isObject(input) {
		return nil, fmt.Errorf("%w: the input of module %s must be a JSON object", ErrInvalid, m.ID)
	}
	rt, err := h.connected(id)
	if err != nil {
		return nil, err
	}
	select {
	case rt.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-rt.slots }()
	h.mu.Lock()
	s, closed := rt.sess, h.closed // it may have gone while we waited
	h.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if s == nil {
		return nil, fmt.Errorf("runtime %s: %w", id, ErrGone)
	}
	return s.invoke(ctx, m, input)
}

// connected returns runtime id, or ErrGone when no page of it is
// connected, or ErrClosed.
func (h *Hub) connected(id string) (*runtime, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	rt := h.runtimes[id]
	if rt == nil || rt.sess == nil {
		return nil, fmt.Errorf("runtime %s: %w", id, ErrGone)
	}
	return rt, nil
}

// Close disconnects every page (they reconnect to the next hub), fails
// what is in flight with ErrGone, refuses new connections and waits for
// the connections' goroutines. It is safe to call more than once.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.serving.Wait()
		return nil
	}
	h.closed = true
	var open []*session
	for _, rt := range h.runtimes {
		if rt.sess != nil {
			open = append(open, rt.sess)
		}
	}
	h.signal()
	h.mu.Unlock()
	for _, s := range open {
		s.end(websocket.StatusGoingAway, "the node is shutting down")
	}
	// The pages have a moment to answer the close; then reads stop.
	done := make(chan struct{})
	go func() {
		h.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	h.stop()
	<-done
	return nil
}

// signal wakes the waiters of Wait. Called with h.mu held.
func (h *Hub) signal() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// forget drops the runtimes gone longer than Config.Forget. Called with
// h.mu held.
func (h *Hub) forget(now time.Time) {
	for id, rt := range h.runtimes {
		if rt.sess == nil && len(rt.slots) == 0 && now.Sub(rt.info.Since) > h.cfg.Forget {
			delete(h.runtimes, id)
		}
	}
}

// attach makes s the connected page of its runtime, replacing a page
// connected before with the same id, which it returns. It refuses (with
// the close status and reason) when the hub is closed or knows
// MaxRuntimes runtimes, every one connected.
func (h *Hub) attach(s *session, hello hello) (old *session, code websocket.StatusCode, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, websocket.StatusGoingAway, "the node is shutting down"
	}
	now := time.Now()
	rt := h.runtimes[hello.Runtime]
	if rt == nil {
		h.forget(now)
		if len(h.runtimes) >= h.cfg.MaxRuntimes {
			var oldest *runtime
			for _, r := range h.runtimes {
				if r.sess == nil && len(r.slots) == 0 && (oldest == nil || r.info.Since.Before(oldest.info.Since)) {
					oldest = r
				}
			}
			if oldest == nil {
				return nil, websocket.StatusTryAgainLater, fmt.Sprintf("this node takes at most %d browser runtimes", h.cfg.MaxRuntimes)
			}
			delete(h.runtimes, oldest.id)
		}
		rt = &runtime{id: hello.Runtime, slots: make(chan struct{}, h.cfg.MaxInFlight)}
		h.runtimes[rt.id] = rt
	}
	old = rt.sess
	rt.sess = s
	s.rt = rt
	rt.info = Info{
		ID: rt.id, Name: hello.Name, Version: hello.Version, Languages: hello.Languages, Protocol: hello.Protocol,
		Connected: true, Since: now, Remote: s.remote,
	}
	h.signal()
	return old, 0, ""
}

// detach records that s went away, unless another page replaced it.
func (h *Hub) detach(s *session, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rt := s.rt
	if rt == nil || rt.sess != s {
		return
	}
	rt.sess = nil
	rt.info.Connected = false
	rt.info.Since = time.Now()
	rt.info.Reason = reason
	h.signal()
}

// nextID returns a message id no other message of this hub has, nor
// (with the random prefix) of an earlier hub whose answers a page may
// still be sending.
func (h *Hub) nextID() string {
	return h.prefix + "-" + strconv.FormatUint(h.seq.Add(1), 10)
}
