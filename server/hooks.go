package server

// Webhooks: the HTTP side of http triggers. A request to a path under
// /hooks/ is matched to the trigger mounted there, checked (method, auth,
// body size) before anything runs, turned into the run's message
// (contract.HTTPRequest), run through the HookBackend, and answered with
// the run's output. Every answer that follows a run names it in
// Andromeda-Run; none is 2xx unless the run was recorded.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/manifest"
)

// HookBackend is the node's side of webhooks and of the secrets they are
// checked with. A Backend that implements it has /hooks/ served (unless
// Config.NoHooks) and the /v1/secrets routes. Safe for concurrent use; like
// Backend, its errors name a kind, never a status.
type HookBackend interface {
	// HookRoute returns the trigger mounted at path, with the value of
	// the secret its auth names when the node holds it; an error wrapping
	// store.ErrNotFound when no trigger is mounted there.
	HookRoute(path string) (HookRoute, error)
	// Hook runs route's service once for a request with method, message
	// being the request (a contract.HTTPRequest), and returns the
	// recorded run. Over the
	// service's concurrency bound it records the run as skipped and
	// returns ErrBusy; when the node takes no work, or the run was not
	// recorded, ErrUnavailable. Both carry RetryAfter.
	Hook(ctx context.Context, route HookRoute, method string, message json.RawMessage) (api.Run, error)
	// HookFlow stores the request (message) in the queue of route's flow
	// and returns its flow run, queued: ErrBusy when the queue is full,
	// ErrUnavailable when the node takes no work or the message was not
	// stored, both with RetryAfter; ErrConflict when the flow stopped.
	HookFlow(ctx context.Context, route HookRoute, method string, message json.RawMessage) (api.FlowRun, error)
	// Secrets lists the secrets' names and where each is held, never
	// their values.
	Secrets(ctx context.Context) ([]api.Secret, error)
	// SetSecret stores a secret at run time: ErrInvalid for a bad name or
	// value, ErrConflict for a name the node config holds.
	SetSecret(ctx context.Context, name string, value []byte) error
	// DeleteSecret removes a stored secret: store.ErrNotFound when there
	// is none, ErrConflict for one the node config holds.
	DeleteSecret(ctx context.Context, name string) error
}

// HookRoute is a trigger mounted at a webhook path: of a service, or of a
// running flow (Flow set, Service empty).
type HookRoute struct {
	Service string
	Flow    string
	Trigger string // "triggers[2]"
	Path    string
	// Methods are the methods it answers; others are answered 405.
	Methods []string
	// Auth is the trigger's auth; the zero HookAuth refuses everyone.
	Auth manifest.HookAuth
	// Secret is the value of the secret Auth names, nil when the node
	// holds no secret by that name (the request is answered 503).
	Secret []byte
}

// Headers of webhook answers.
const (
	// HeaderRun names the run behind an answer.
	HeaderRun = "Andromeda-Run"
	// HeaderFlowRun names the flow run a flow's webhook started.
	HeaderFlowRun = "Andromeda-Flow-Run"
	// HeaderNoop carries the reason of a run that did nothing (204).
	HeaderNoop = "Andromeda-Noop"
	// HeaderReason says why a request was refused or not run.
	HeaderReason = "Andromeda-Reason"
)

// MaxSecretBytes caps a secret's value.
const MaxSecretBytes = 64 << 10

// The kinds of the webhook answers that only this file gives.
var (
	errMethod   = errors.New("method not allowed")
	errHookFail = errors.New("the run did not complete")
)

// hook answers a request to a webhook path.
func (s *Server) hook(w http.ResponseWriter, r *http.Request) {
	hb := s.hooks
	route, err := hb.HookRoute(r.URL.Path)
	if err != nil {
		s.hookFail(w, r, Errorf(errNoRoute, "no webhook at %s", r.URL.Path), "")
		return
	}
	if !slices.Contains(route.Methods, r.Method) {
		w.Header().Set("Allow", strings.Join(route.Methods, ", "))
		s.hookFail(w, r, Errorf(errMethod, "%s is not allowed here; allowed: %s", r.Method, strings.Join(route.Methods, ", ")), "")
		return
	}
	if r.ContentLength > s.cfg.MaxHookBody {
		s.hookFail(w, r, &http.MaxBytesError{Limit: s.cfg.MaxHookBody}, "")
		return
	}
	auth := route.Auth
	switch kind := auth.Kind(); {
	case kind == manifest.AuthUnset:
		s.hookFail(w, r, Errorf(errUnauthenticated, "this webhook has no auth: its manifest must say auth: none to be open"), "")
		return
	case kind != manifest.AuthNone && route.Secret == nil:
		if s.log != nil {
			s.log.Warn("webhook secret not set", "service", route.Service, "flow", route.Flow, "trigger", route.Trigger, "secret", auth.Secret())
		}
		s.hookFail(w, r, &Error{Kind: ErrUnavailable, Msg: "the secret this webhook is checked with is not set on the node", RetryAfter: time.Minute}, "")
		return
	case kind == manifest.AuthBearer:
		if reason := checkBearer(r.Header, route.Secret); reason != "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="andromeda-hook"`)
			s.hookFail(w, r, Errorf(errUnauthenticated, "%s", reason), "")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxHookBody))
	if err != nil {
		s.hookFail(w, r, err, "")
		return
	}
	if auth.Kind() == manifest.AuthHMAC {
		if reason := CheckHMAC(auth.HMAC, route.Secret, r.Header, body, time.Now()); reason != "" {
			s.hookFail(w, r, Errorf(errUnauthenticated, "%s", reason), "")
			return
		}
	}
	msg, err := json.Marshal(hookRequest(r, route, body))
	if err != nil {
		s.hookFail(w, r, err, "")
		return
	}
	if route.Flow != "" {
		s.hookFlow(w, r, route, msg)
		return
	}
	run, err := hb.Hook(r.Context(), route, r.Method, msg)
	if err != nil {
		var e *Error
		id := ""
		if errors.As(err, &e) && e.Run != nil {
			id = e.Run.ID
		}
		// What went wrong inside is the operator's to read on the run
		// and in the log, not the caller's.
		if errors.Is(err, ErrBusy) || errors.Is(err, ErrUnavailable) {
			retry := time.Second
			if e != nil && e.RetryAfter > 0 {
				retry = e.RetryAfter
			}
			kind := ErrUnavailable
			msg := "the node cannot take this request now; retry later"
			if errors.Is(err, ErrBusy) {
				kind, msg = ErrBusy, "the service has as many runs in progress as it allows; retry later"
			}
			err = &Error{Kind: kind, Msg: msg, RetryAfter: retry}
		}
		s.hookFail(w, r, err, id)
		return
	}
	s.hookAnswer(w, r, run)
}

// hookFlow answers a request to a flow's webhook: 202 with the flow run
// once its message is stored in the flow's queue (the flow runs on
// without the caller: its outcome is in flow runs), 429 or 503 with
// Retry-After when it could not be stored.
func (s *Server) hookFlow(w http.ResponseWriter, r *http.Request, route HookRoute, msg json.RawMessage) {
	fr, err := s.hooks.HookFlow(r.Context(), route, r.Method, msg)
	if err != nil {
		s.hookFail(w, r, err, "")
		return
	}
	w.Header().Set(HeaderFlowRun, fr.ID)
	writeJSON(w, http.StatusAccepted, fr)
}

// hookAnswer answers with a recorded run: its http response, its output,
// 204 for a noop, 502 for a run that did not complete.
func (s *Server) hookAnswer(w http.ResponseWriter, r *http.Request, run api.Run) {
	h := w.Header()
	h.Set(HeaderRun, run.ID)
	out := run.Output
	switch {
	case (run.Outcome == "ok" || run.Outcome == "noop") && out != nil && out.HTTP != nil:
		if out.Noop != "" {
			h.Set(HeaderNoop, oneLine(out.Noop))
		}
		writeHookResponse(w, out.HTTP)
	case run.Outcome == "noop":
		reason := run.Noop
		if out != nil && out.Noop != "" {
			reason = out.Noop
		}
		h.Set(HeaderNoop, oneLine(reason))
		w.WriteHeader(http.StatusNoContent)
	case run.Outcome == "ok" && out != nil:
		writeJSON(w, http.StatusOK, out)
	case run.Outcome == "skipped":
		s.hookFail(w, r, &Error{Kind: ErrUnavailable, Msg: "the service could not run this request now; retry later", RetryAfter: time.Second}, run.ID)
	default:
		s.hookFail(w, r, Errorf(errHookFail, "the service's run %s did not complete", run.ID), run.ID)
	}
}

// writeHookResponse sends a service's http response: a string body as its
// text, any other as JSON.
func writeHookResponse(w http.ResponseWriter, resp *contract.HTTPResponse) {
	h := w.Header()
	for name, v := range resp.Headers {
		h.Set(name, v)
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	var body []byte
	switch raw := bytes.TrimSpace(resp.Body); {
	case len(raw) == 0 || string(raw) == "null":
	case raw[0] == '"':
		var text string
		if json.Unmarshal(raw, &text) == nil {
			body = []byte(text)
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
	default:
		body = raw
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json")
		}
	}
	if len(body) > 0 {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	w.Write(body)
}

// hookFail answers a webhook request with err's status and problem
// details, the reason in Andromeda-Reason and the run, if any, in
// Andromeda-Run.
func (s *Server) hookFail(w http.ResponseWriter, r *http.Request, err error, runID string) {
	if runID != "" {
		w.Header().Set(HeaderRun, runID)
	}
	w.Header().Set(HeaderReason, oneLine(toAPIError(err).Message))
	s.fail(w, r, err)
}

// oneLine makes s fit a header: one line of at most 1024 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 1024 {
		s = s[:1024]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// checkBearer returns why the request's bearer token is not the secret,
// or "". The comparison is of SHA-256 digests in constant time, so
// neither the secret's value nor its length leaks through timing.
func checkBearer(h http.Header, secret []byte) string {
	token, ok := bearer(&http.Request{Header: h})
	if !ok {
		return "missing bearer token: send Authorization: Bearer <token>"
	}
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return "invalid bearer token"
	}
	return ""
}

// CheckHMAC returns why a request does not carry a valid HMAC-SHA256
// signature under key by a's rules, or "": the signature, after a.Prefix,
// is 64 hex digits or the standard base64 of the 32-byte digest of the
// body, or of "TIMESTAMP.BODY" when a.TimestampHeader is set; the
// timestamp, in Unix seconds, must then be within a's tolerance of now.
// The digests are compared in constant time.
func CheckHMAC(a *manifest.HMACAuth, key []byte, h http.Header, body []byte, now time.Time) string {
	raw := h.Get(a.Header)
	if raw == "" {
		return "missing signature header " + a.Header
	}
	sig, ok := ParseSignature(raw, a.Prefix)
	if !ok {
		return fmt.Sprintf("signature header %s: want %s followed by 64 hex digits or base64 of 32 bytes", a.Header, strconv.Quote(a.Prefix))
	}
	m := hmac.New(sha256.New, key)
	if a.TimestampHeader != "" {
		ts := strings.TrimSpace(h.Get(a.TimestampHeader))
		if ts == "" {
			return "missing timestamp header " + a.TimestampHeader
		}
		secs, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return "timestamp header " + a.TimestampHeader + ": want Unix seconds"
		}
		tol := a.ToleranceOrDefault()
		if d := now.Sub(time.Unix(secs, 0)); d > tol || d < -tol {
			return fmt.Sprintf("timestamp outside the replay window of %s: signed at %s", tol, time.Unix(secs, 0).UTC().Format(time.RFC3339))
		}
		m.Write([]byte(ts))
		m.Write([]byte{'.'})
	}
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), sig) {
		return "signature does not match"
	}
	return ""
}

// ParseSignature reads a signature header's value: prefix (when not
// empty), then 64 hex digits or the standard base64 (padded or not) of a
// 32-byte digest, white space around it allowed. It reports false for
// anything else.
func ParseSignature(v, prefix string) ([]byte, bool) {
	v = strings.TrimSpace(v)
	if prefix != "" {
		var ok bool
		if v, ok = strings.CutPrefix(v, prefix); !ok {
			return nil, false
		}
	}
	if len(v) == 2*sha256.Size {
		if b, err := hex.DecodeString(v); err == nil {
			return b, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.Strict().DecodeString(v); err == nil && len(b) == sha256.Size {
			return b, true
		}
	}
	return nil, false
}

// hookRequest is the run's message for r, whose body was read as body.
func hookRequest(r *http.Request, route HookRoute, body []byte) contract.HTTPRequest {
	req := contract.HTTPRequest{Method: r.Method, Path: route.Path}
	if q := r.URL.Query(); len(q) > 0 {
		req.Query = q
	}
	skip := map[string]bool{"Authorization": true}
	if route.Auth.HMAC != nil {
		skip[http.CanonicalHeaderKey(route.Auth.HMAC.Header)] = true
	}
	for name, v := range r.Header {
		if skip[name] {
			continue
		}
		if req.Headers == nil {
			req.Headers = map[string][]string{}
		}
		req.Headers[name] = v
	}
	switch {
	case len(body) == 0:
	case jsonType(r.Header.Get("Content-Type")) && json.Valid(body):
		req.Body = body
	case utf8.Valid(body):
		req.Body, _ = json.Marshal(string(body))
	default:
		req.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	return req
}

// jsonType reports whether a Content-Type is JSON: application/json or a
// +json type.
func jsonType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// The secrets API: operator only.

func (s *Server) secrets(w http.ResponseWriter, r *http.Request, p Principal) {
	list, err := s.hooks.Secrets(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, list)
}

func (s *Server) setSecret(w http.ResponseWriter, r *http.Request, p Principal) {
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSecretBytes))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.hooks.SetSecret(r.Context(), r.PathValue("name"), value); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, p Principal) {
	if err := s.hooks.DeleteSecret(r.Context(), r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// NewHooks returns a server of webhooks alone (and GET /healthz), for a
// listener of their own, so that the API can stay on a private one.
// Everything else is answered 404. Serve it as New's server: HTTPServer on
// Listener.
func NewHooks(b HookBackend, cfg Config, log *slog.Logger) *Server {
	s := &Server{cfg: cfg.withDefaults(), log: log, mux: newMux(), hooks: b}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	s.mux.HandleFunc(manifest.HookPathPrefix, s.hook)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, Errorf(errNoRoute, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return s
}

// hookRoutes mounts the webhooks (unless they have a listener of their
// own) and the secrets API, when the backend serves them.
func (s *Server) hookRoutes() {
	hb, ok := s.b.(HookBackend)
	if !ok {
		return
	}
	s.hooks = hb
	op := api.RoleOperator
	s.handle("GET /v1/secrets", op, s.secrets)
	s.handle("PUT /v1/secrets/{name}", op, s.setSecret)
	s.handle("DELETE /v1/secrets/{name}", op, s.deleteSecret)
	if !s.cfg.NoHooks {
		s.mux.HandleFunc(manifest.HookPathPrefix, s.hook)
	}
}
