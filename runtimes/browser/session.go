package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// StatusReplaced is the close status of a page whose runtime id another
// page took: the page stops and says so instead of reconnecting.
const StatusReplaced websocket.StatusCode = 4000

// A session is one page's WebSocket connection, from its handshake until
// it goes away.
type session struct {
	hub    *Hub
	conn   *websocket.Conn
	remote string
	rt     *runtime      // set by Hub.attach
	gone   chan struct{} // closed when the session ends

	// sending is held across a module's load and its invoke, which the
	// page must read in that order (a channel, so a caller waiting for it
	// can give up with its context).
	sending chan struct{}

	mu      sync.Mutex
	ended   bool
	reason  string            // why it ended
	pending map[string]*call  // by message id
	loaded  map[string]string // Module.ID → the key of the code loaded on the page
	closing chan struct{}     // closed when end has closed the connection
}

// call is an invocation waiting for the page's answer.
type call struct {
	module string
	done   chan answer // buffered: the one answer is never blocked on
	logged int         // bytes of its log lines logged (under session.mu)
	capped bool        // the cap was said
}

// Bounds of a module's log lines on the node's log: maxLogLine per line
// (cut), maxLogBytes per invocation (the rest dropped, said once), as the
// process driver bounds a run's log.
const (
	maxLogLine  = 1 << 10
	maxLogBytes = 8 << 10
)

type answer struct {
	output []byte
	err    error
}

// The messages a page sends (one struct: a message's fields by its type).
type inMessage struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	// auth
	Token string `json:"token"`
	// hello
	hello
	// result
	Output json.RawMessage `json:"output"`
	// error
	Error *wireError `json:"error"`
	// log
	Level   string `json:"level"`
	Message string `json:"message"`
}

type hello struct {
	Runtime   string   `json:"runtime"`
	Name      string   `json:"name"`
	Version   string   `json:"version"`
	Languages []string `json:"languages"`
	Protocol  int      `json:"protocol"`
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Stack   string `json:"stack,omitempty"`
}

// closeError ends a session with a close status and a reason the page
// shows.
type closeError struct {
	code   websocket.StatusCode
	reason string
}

func (e *closeError) Error() string { return e.reason }

func closeWith(code websocket.StatusCode, format string, args ...any) error {
	return &closeError{code, fmt.Sprintf(format, args...)}
}

// serveWS upgrades the request and serves the page's connection until it
// ends.
func (h *Hub) serveWS(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		http.Error(w, "the node is shutting down", http.StatusServiceUnavailable)
		return
	}
	h.serving.Add(1)
	h.mu.Unlock()
	defer h.serving.Done()

	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: h.cfg.OriginPatterns})
	if err != nil {
		h.log.Info("browser runtime refused", logRemote, r.RemoteAddr, logErr, err) // Accept answered it
		return
	}
	conn.SetReadLimit(h.cfg.MaxMessage)
	s := &session{
		hub: h, conn: conn, remote: r.RemoteAddr, gone: make(chan struct{}), closing: make(chan struct{}),
		sending: make(chan struct{}, 1), pending: map[string]*call{}, loaded: map[string]string{},
	}
	s.serve()
}

// serve runs the handshake, then reads the page's messages until the
// connection ends, and ends the session with the reason.
func (s *session) serve() {
	h := s.hub
	err := s.handshake()
	if err == nil {
		h.log.Info("browser runtime connected", logRuntime, s.rt.id, logRemote, s.remote)
		if h.cfg.PingInterval > 0 {
			go s.ping()
		}
		err = s.read()
	}
	code, reason := websocket.StatusInternalError, "connection lost"
	var ce *closeError
	switch {
	case errors.As(err, &ce):
		code, reason = ce.code, ce.reason
	case websocket.CloseStatus(err) != -1:
		code, reason = websocket.CloseStatus(err), "the page closed the connection"
		var wce websocket.CloseError
		if errors.As(err, &wce) && wce.Reason != "" {
			reason += ": " + wce.Reason
		}
	case errors.Is(err, websocket.ErrMessageTooBig):
		code, reason = websocket.StatusMessageTooBig, fmt.Sprintf("a message longer than %d bytes", h.cfg.MaxMessage)
	}
	s.end(code, reason)
	<-s.closing
	s.mu.Lock()
	reason = s.reason // the first, when the session was ended before
	s.mu.Unlock()
	if s.rt != nil {
		h.log.Info("browser runtime went away", logRuntime, s.rt.id, logRemote, s.remote, "reason", reason)
	} else {
		h.log.Info("browser runtime refused", logRemote, s.remote, "reason", reason)
	}
}

// handshake reads the page's token and its hello, within
// HandshakeTimeout, attaches the session to its runtime and welcomes the
// page.
func (s *session) handshake() error {
	h := s.hub
	// The timeout closes the connection with its reason (a read's own
	// deadline would drop it without one).
	late := time.AfterFunc(h.cfg.HandshakeTimeout, func() {
		s.end(websocket.StatusPolicyViolation, "unauthorized: no token and hello in time")
	})
	defer late.Stop()
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.HandshakeTimeout)
	defer cancel()
	m, err := s.readMessage(h.ctx)
	if err != nil {
		return err
	}
	if m.Type != "auth" {
		return closeWith(websocket.StatusPolicyViolation, "unauthorized: the first message must be auth with a token")
	}
	role, err := h.cfg.Authorize(ctx, m.Token)
	if err != nil {
		h.log.Info("browser runtime token refused", logRemote, s.remote, logErr, err)
		return closeWith(websocket.StatusPolicyViolation, "unauthorized: the token is not valid")
	}
	if role != h.cfg.Role {
		return closeWith(websocket.StatusPolicyViolation, "unauthorized: a browser runtime needs a %s token, not %s", h.cfg.Role, clip(role, 32))
	}
	if m, err = s.readMessage(h.ctx); err != nil {
		return err
	}
	if m.Type != "hello" {
		return closeWith(websocket.StatusProtocolError, "protocol error: the second message must be hello, not %q", clip(m.Type, 32))
	}
	if err := m.hello.check(); err != nil {
		return err
	}
	if !late.Stop() {
		return errors.New("the handshake timed out")
	}
	// Nothing may be sent before the welcome: an Invoke that finds the
	// session once it is attached waits for it to be written.
	s.sending <- struct{}{}
	defer func() { <-s.sending }()
	old, code, reason := h.attach(s, m.hello)
	if reason != "" {
		return closeWith(code, "%s", reason)
	}
	if old != nil {
		old.end(StatusReplaced, "replaced by a newer page of runtime "+m.Runtime)
	}
	welcome, _ := json.Marshal(map[string]any{
		"type": "welcome", "id": m.ID, "runtime": m.Runtime, "protocol": Protocol,
		"max_in_flight": h.cfg.MaxInFlight, "max_message": h.cfg.MaxMessage,
		"cancel_grace_ms": h.cfg.CancelGrace.Milliseconds(),
	})
	if err := s.write(welcome); err != nil {
		return err
	}
	return nil
}

func (m hello) check() error {
	switch {
	case m.Protocol != Protocol:
		return closeWith(websocket.StatusProtocolError, "protocol %d is not supported: this node speaks %d", m.Protocol, Protocol)
	case !runtimeIDRE.MatchString(m.Runtime):
		return closeWith(websocket.StatusProtocolError, "protocol error: the runtime id must be 1 to 64 of [A-Za-z0-9._-]")
	case len(m.Name) > 128 || !utf8.ValidString(m.Name):
		return closeWith(websocket.StatusProtocolError, "protocol error: the name must be at most 128 bytes of UTF-8")
	case len(m.Version) > 512 || !utf8.ValidString(m.Version):
		return closeWith(websocket.StatusProtocolError, "protocol error: the version must be at most 512 bytes of UTF-8")
	case len(m.Languages) > 16:
		return closeWith(websocket.StatusProtocolError, "protocol error: more than 16 languages")
	}
	for _, l := range m.Languages {
		if l == Language {
			return nil
		}
	}
	return closeWith(websocket.StatusProtocolError, "protocol error: the languages must include %s", Language)
}

// readMessage reads one message of the protocol: a text message holding a
// JSON object with a type.
func (s *session) readMessage(ctx context.Context) (*inMessage, error) {
	typ, data, err := s.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	return parseMessage(typ, data)
}

// parseMessage reads a message of the protocol, or says how it is not
// one.
func parseMessage(typ websocket.MessageType, data []byte) (*inMessage, error) {
	if typ != websocket.MessageText {
		return nil, closeWith(websocket.StatusUnsupportedData, "protocol error: a binary message")
	}
	var m inMessage
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, closeWith(websocket.StatusProtocolError, "protocol error: a message that is not a JSON object")
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, closeWith(websocket.StatusProtocolError, "protocol error: %s", clip(err.Error(), 80))
	}
	if m.Type == "" {
		return nil, closeWith(websocket.StatusProtocolError, "protocol error: a message without a type")
	}
	return &m, nil
}

// read handles the page's messages until the connection ends or the page
// breaks the protocol.
func (s *session) read() error {
	for {
		m, err := s.readMessage(s.hub.ctx)
		if err != nil {
			return err
		}
		if err := s.handle(m); err != nil {
			return err
		}
	}
}

// handle acts on a message of a welcomed page.
func (s *session) handle(m *inMessage) error {
	switch m.Type {
	case "result":
		if len(m.Output) == 0 || m.Output[0] != '{' {
			return closeWith(websocket.StatusProtocolError, "protocol error: the output of result %s is not a JSON object", clip(m.ID, 32))
		}
		s.answer(m.ID, answer{output: m.Output})
	case "error":
		if m.Error == nil || m.Error.Message == "" {
			return closeWith(websocket.StatusProtocolError, "protocol error: error %s has no message", clip(m.ID, 32))
		}
		s.answer(m.ID, answer{err: &Error{Runtime: s.rt.id, Code: m.Error.Code, Message: m.Error.Message, Stack: m.Error.Stack}})
	case "log":
		s.logLine(m)
	case "auth", "hello":
		return closeWith(websocket.StatusProtocolError, "protocol error: %s after the handshake", m.Type)
	default: // usage reports, and types of later versions, are ignored
	}
	return nil
}

// answer hands the page's answer to the invocation waiting for it; an
// answer nobody waits for (it was cancelled) is dropped.
func (s *session) answer(id string, a answer) {
	s.mu.Lock()
	c := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if c == nil {
		return
	}
	if e, ok := a.err.(*Error); ok {
		e.Module = c.module
	}
	c.done <- a
}

// logLine passes a module's ctx.log line to the hub's logger.
func (s *session) logLine(m *inMessage) {
	text := m.Message
	if len(text) > maxLogLine {
		text = strings.ToValidUTF8(text[:maxLogLine], "") + " …(cut)"
	}
	s.mu.Lock()
	c := s.pending[m.ID]
	var over, say bool
	if c != nil {
		over = c.logged+len(text) > maxLogBytes
		if over && !c.capped {
			c.capped, say = true, true
		}
		if !over {
			c.logged += len(text)
		}
	}
	s.mu.Unlock()
	switch {
	case c == nil:
		return
	case say:
		s.hub.log.Warn("module log lines over the cap of an invocation dropped", logRuntime, s.rt.id, logModule, c.module, "cap_bytes", maxLogBytes)
		return
	case over:
		return
	}
	level := slog.LevelInfo
	switch m.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	s.hub.log.Log(s.hub.ctx, level, text, logRuntime, s.rt.id, logModule, c.module)
}

// invoke sends module m (unless the page has it) and the invocation, and
// waits for the answer, the page going away or ctx.
func (s *session) invoke(ctx context.Context, m Module, input []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := s.hub
	id := h.nextID()
	key := m.key()
	msg := make([]byte, 0, len(input)+len(id)+len(key)+96)
	msg = append(msg, `{"type":"invoke","id":"`...)
	msg = append(msg, id...)
	msg = append(msg, `","module":"`...)
	msg = append(msg, key...)
	msg = append(msg, `","input":`...)
	msg = append(msg, input...)
	if d, ok := ctx.Deadline(); ok {
		msg = append(msg, `,"deadline":`...)
		msg = strconv.AppendInt(msg, d.UnixMilli(), 10)
	}
	msg = append(msg, '}')
	if int64(len(msg)) > h.cfg.MaxMessage {
		return nil, fmt.Errorf("invoke module %s: %w: an input of %d bytes (the limit is %d bytes)", m.ID, ErrTooLarge, len(input), h.cfg.MaxMessage)
	}

	c := &call{module: m.ID, done: make(chan answer, 1)}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil, s.goneErr()
	}
	s.pending[id] = c
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()

	if err := s.send(ctx, m, key, msg); err != nil {
		return nil, err
	}
	select {
	case a := <-c.done:
		return a.output, a.err
	case <-s.gone:
		select {
		case a := <-c.done: // answered just before it went
			return a.output, a.err
		default:
			return nil, s.goneErr()
		}
	case <-ctx.Done():
		select {
		case a := <-c.done:
			return a.output, a.err
		default:
		}
		go s.write([]byte(`{"type":"cancel","id":"` + id + `"}`)) // the page stops it, or restarts its worker
		return nil, ctx.Err()
	}
}

// send writes the module's load message, when the page does not have it,
// and then msg, in that order, unless ctx ends or the session does while
// another invocation is being sent.
func (s *session) send(ctx context.Context, m Module, key string, msg []byte) error {
	select {
	case s.sending <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.gone:
		return s.goneErr()
	}
	defer func() { <-s.sending }()
	s.mu.Lock()
	had := s.loaded[m.ID]
	s.mu.Unlock()
	if had != key {
		load, err := json.Marshal(struct {
			Type   string          `json:"type"`
			ID     string          `json:"id"`
			Module string          `json:"module"`
			Name   string          `json:"name"`
			Code   string          `json:"code"`
			Config json.RawMessage `json:"config,omitempty"`
		}{"load", key, key, m.ID, m.Code, m.Config})
		if err != nil {
			return fmt.Errorf("load module %s: %w", m.ID, err)
		}
		if int64(len(load)) > s.hub.cfg.MaxMessage {
			return fmt.Errorf("load module %s: %w: %d bytes of code (the limit is %d bytes)", m.ID, ErrTooLarge, len(m.Code), s.hub.cfg.MaxMessage)
		}
		if had != "" {
			if err := s.write([]byte(`{"type":"unload","id":"` + had + `","module":"` + had + `"}`)); err != nil {
				return err
			}
		}
		if err := s.write(load); err != nil {
			return err
		}
		s.mu.Lock()
		s.loaded[m.ID] = key
		s.mu.Unlock()
	}
	return s.write(msg)
}

// write sends one message to the page within WriteTimeout; a write that
// fails ends the session, and its error is ErrGone's.
func (s *session) write(msg []byte) error {
	ctx, cancel := context.WithTimeout(s.hub.ctx, s.hub.cfg.WriteTimeout)
	defer cancel()
	if err := s.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		reason := "the connection failed"
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "the page did not read its messages in time"
		}
		s.end(websocket.StatusPolicyViolation, reason)
		return s.goneErr()
	}
	return nil
}

// ping pings the page every PingInterval until the session ends, and ends
// it when a pong does not come back within the interval.
func (s *session) ping() {
	every := s.hub.cfg.PingInterval
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.gone:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.hub.ctx, every)
		err := s.conn.Ping(ctx)
		cancel()
		if err != nil {
			s.end(websocket.StatusPolicyViolation, "the page did not answer a ping within "+every.String())
			return
		}
	}
}

// end ends the session once: the invocations waiting fail with ErrGone at
// once, and the connection is closed with code and reason (which the page
// shows) in the background.
func (s *session) end(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.reason = reason
	close(s.gone)
	s.mu.Unlock()
	if s.rt != nil {
		s.hub.detach(s, reason)
	}
	go func() {
		defer close(s.closing)
		s.conn.Close(code, clip(reason, 123))
	}()
}

// goneErr is ErrGone with the runtime and why its page went.
func (s *session) goneErr() error {
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	id := ""
	if s.rt != nil {
		id = s.rt.id
	}
	if reason == "" {
		return fmt.Errorf("runtime %s: %w", id, ErrGone)
	}
	return fmt.Errorf("runtime %s: %w (%s)", id, ErrGone, reason)
}

// modules counts the modules loaded on the page.
func (s *session) modules() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.loaded)
}

// clip returns s cut to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
