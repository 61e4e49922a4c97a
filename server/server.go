// Package server is the node's HTTP face: routing, bearer-token auth with the
// operator and submitter roles, the kinds of error a Backend returns and
// their mapping to HTTP status and problem details (in one place,
// errors.go), health and metrics endpoints. It holds no state of its
// own: every request is answered by a Backend, which the node implements.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
)

// Principal is the caller a token belongs to.
type Principal struct {
	Name string
	Role string // api.RoleOperator or api.RoleSubmitter
}

// Operator reports whether the caller may do everything.
func (p Principal) Operator() bool { return p.Role == api.RoleOperator }

// Backend answers the API. The node implements it; every method is safe for
// concurrent use. Methods that act for a caller receive its Principal and
// enforce ownership themselves (a submitter sees only its own services).
// Their errors say what kind of error they are (ErrInvalid, ErrConflict, …,
// store.ErrNotFound), never an HTTP status.
type Backend interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
	Submit(ctx context.Context, p Principal, archive io.Reader, o api.SubmitOptions) (api.SubmitResult, error)
	SubmitSource(ctx context.Context, p Principal, manifestJSON []byte, o api.SubmitOptions) (api.SubmitResult, error)
	PolicyInfo(ctx context.Context) api.PolicyInfo
	Deps(ctx context.Context, p Principal, service string) ([]api.Dep, error)
	AddDep(ctx context.Context, p Principal, service, pkg string) error
	RemoveDep(ctx context.Context, p Principal, service, pkg string) error
	Services(ctx context.Context, p Principal) ([]api.Service, error)
	Service(ctx context.Context, p Principal, name string) (api.Service, error)
	Remove(ctx context.Context, name string) error
	Fire(ctx context.Context, name string, message json.RawMessage) (api.Run, error)
	Publish(ctx context.Context, p Principal, topic string, message json.RawMessage) (api.Published, error)
	Runs(ctx context.Context, p Principal, service string, q api.RunQuery) (api.RunList, error)
	Run(ctx context.Context, p Principal, service, id string) (api.Run, error)
	CreateToken(ctx context.Context, name, role string) (api.Token, error)
	Node(ctx context.Context) api.NodeInfo
	Ready() error
	// Readiness is Ready with what the store found at start.
	Readiness() api.Readiness
	Metrics() http.Handler
}

// Config tunes the server. A zero or negative field takes its default
// (DefaultConfig).
type Config struct {
	// MaxArchiveBytes caps a submitted archive's body. Default 16 MiB.
	MaxArchiveBytes int64
	// MaxJSONBytes caps every JSON request body. Default 1 MiB.
	MaxJSONBytes int64
	// SeedEndpoint serves POST /service (the KLYNTAR worker's endpoint).
	SeedEndpoint bool
	// SeedAnonymous lets POST /service in without a token, as submitter
	// "anonymous".
	SeedAnonymous bool
	// MetricsToken makes GET /metrics require an operator token. Default
	// false: /metrics is open.
	MetricsToken bool
	// NoHooks leaves the webhooks (/hooks/...) out of this server: they
	// are served by NewHooks on a listener of their own. Default false.
	NoHooks bool
	// MaxHookBody caps a webhook request's body; a larger one is answered
	// 413 and runs nothing. Default 1 MiB.
	MaxHookBody int64

	// ReadHeaderTimeout is how long a client may take to send a request's
	// line and headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is how long a client may take to send a whole request,
	// headers and body, on every route but POST /v1/services (see
	// UploadMinRate). A body not in by then is answered 408 and the
	// connection closed. Default 30s.
	ReadTimeout time.Duration
	// UploadMinRate, in bytes per second, is the pace a submission's body
	// (POST /v1/services) must keep on average: it may take ReadTimeout
	// plus its size divided by UploadMinRate. At the default, a steady
	// upload of a 64 MiB archive may take up to 30s + 68m16s; a client that
	// stalls is cut off once it falls behind. Default 16 KiB/s.
	UploadMinRate int64
	// WriteTimeout is how long a client may take to receive a response,
	// counted from the response's first byte; the handler's own work before
	// that is bounded by its context, not by this. A streaming route takes
	// its deadline over with http.ResponseController.SetWriteDeadline.
	// Default 30s.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. Default 30s.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps a request's line and headers, answered 431 above
	// it (net/http allows 4 KiB of slack). Submission attestations travel
	// in a header of up to 64 KiB. Default 128 KiB.
	MaxHeaderBytes int
	// MaxConns caps the connections open at once; one more is answered 503
	// with Retry-After and closed. Default 512.
	MaxConns int
	// MaxConnsPerIP caps the connections open at once from one client IP
	// address; one more is answered 429 with Retry-After and closed. Behind
	// a reverse proxy every client has the proxy's address: raise it to
	// MaxConns there. Default 64.
	MaxConnsPerIP int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MaxArchiveBytes:   16 << 20,
		MaxJSONBytes:      1 << 20,
		MaxHookBody:       1 << 20,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		UploadMinRate:     16 << 10,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    128 << 10,
		MaxConns:          512,
		MaxConnsPerIP:     64,
	}
}

// withDefaults fills the zero and negative fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.MaxArchiveBytes, d.MaxArchiveBytes)
	orDefault(&c.MaxJSONBytes, d.MaxJSONBytes)
	orDefault(&c.MaxHookBody, d.MaxHookBody)
	orDefault(&c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	orDefault(&c.ReadTimeout, d.ReadTimeout)
	orDefault(&c.UploadMinRate, d.UploadMinRate)
	orDefault(&c.WriteTimeout, d.WriteTimeout)
	orDefault(&c.IdleTimeout, d.IdleTimeout)
	orDefault(&c.MaxHeaderBytes, d.MaxHeaderBytes)
	orDefault(&c.MaxConns, d.MaxConns)
	orDefault(&c.MaxConnsPerIP, d.MaxConnsPerIP)
	return c
}

func orDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Server routes HTTP requests to a Backend.
type Server struct {
	b     Backend
	hooks HookBackend // nil when the backend serves no webhooks
	// planner plans fires (fire --plan); nil when the backend does not.
	planner PlanBackend
	cfg     Config
	log     *slog.Logger
	mux     *mux

	// runner runs with args, detached, waited on and killed; nil when the
	// backend does not.
	runner RunBackend
}

// New returns a server for b. It starts nothing: use it as an http.Handler,
// or serve it with HTTPServer on Listener to have the timeouts and
// connection limits.
func New(b Backend, cfg Config, log *slog.Logger) *Server {
	s := &Server{b: b, cfg: cfg.withDefaults(), log: log, mux: newMux()}
	s.routes()
	return s
}

func (s *Server) routes() {
	op, anyRole := api.RoleOperator, ""
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.MetricsToken {
		s.handle("GET /metrics", op, func(w http.ResponseWriter, r *http.Request, p Principal) { s.b.Metrics().ServeHTTP(w, r) })
	} else {
		s.mux.Handle("GET /metrics", s.b.Metrics())
	}
	s.mux.HandleFunc("GET /v1/openapi.json", s.openapi)
	s.handle("GET /v1/node", anyRole, s.node)
	s.handle("POST /v1/services", anyRole, s.submit)
	s.handle("GET /v1/services", anyRole, s.services)
	s.handle("GET /v1/services/{name}", anyRole, s.service)
	s.handle("DELETE /v1/services/{name}", op, s.remove)
	s.handle("POST /v1/services/{name}/fire", op, s.fire)
	s.handle("GET /v1/services/{name}/runs", anyRole, s.runs)
	s.handle("GET /v1/services/{name}/runs/{id}", anyRole, s.run)
	s.handle("GET /v1/runs", anyRole, s.runs)
	s.handle("POST /v1/events/{topic}", anyRole, s.publish)
	s.handle("POST /v1/tokens", op, s.createToken)
	s.handle("POST /v1/nats/users", op, s.createNATSUser)
	s.handle("GET /v1/nats/users", op, s.natsUsers)
	s.handle("DELETE /v1/nats/users/{name}", op, s.removeNATSUser)
	s.handle("GET /v1/policy", op, s.policy)
	s.handle("GET /v1/services/{name}/deps", anyRole, s.deps)
	s.handle("POST /v1/services/{name}/deps", anyRole, s.addDep)
	s.handle("DELETE /v1/services/{name}/deps", anyRole, s.removeDep)
	if s.cfg.SeedEndpoint {
		s.mux.HandleFunc("POST /service", s.seedService)
	}
	s.hookRoutes()
	s.keyRoutes()
	s.offerRoutes()
	s.clusterRoutes()
	s.flowRoutes()
	s.flowRunRoutes()
	s.whyRoutes()
	s.planRoutes()
	s.stateRoutes()
	s.runRoutes()
	s.usageRoutes()
	s.configRoutes()
	s.lifecycleRoutes()
	s.fileRoutes()
	s.watchRoutes()
	s.trustRoutes()
	s.browserRoutes()
	s.uiRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, Errorf(errNoRoute, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
}

// mux is the server's ServeMux, which also keeps the patterns registered
// on it: a test checks them against the API document both ways.
type mux struct {
	*http.ServeMux
	patterns []string
}

func newMux() *mux { return &mux{ServeMux: http.NewServeMux()} }

func (m *mux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *mux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

type principalKey struct{}

// handle registers an authenticated route; role "" admits any valid token.
func (s *Server) handle(pattern, role string, h func(w http.ResponseWriter, r *http.Request, p Principal)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="andromeda"`)
			s.fail(w, r, Errorf(errUnauthenticated, "missing bearer token: send Authorization: Bearer <token>"))
			return
		}
		p, err := s.b.Authenticate(r.Context(), token)
		if errors.Is(err, ErrUnavailable) {
			s.fail(w, r, err)
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="andromeda", error="invalid_token"`)
			s.fail(w, r, Errorf(errUnauthenticated, "invalid token"))
			return
		}
		if role != "" && p.Role != role {
			s.fail(w, r, Errorf(ErrForbidden, "this endpoint needs the %s role; token %s is %s", role, p.Name, p.Role))
			return
		}
		if p.Role == api.RoleRuntime {
			s.fail(w, r, Errorf(ErrForbidden, "token %s has the runtime role: it connects a browser runtime (/runtime/browser) and nothing else", p.Name))
			return
		}
		h(w, r, p)
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	t := strings.TrimSpace(h[len(prefix):])
	return t, t != ""
}

// ServeHTTP implements http.Handler with access logging and the
// per-response deadline rules (see statusWriter).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, rc: http.NewResponseController(w), writeTimeout: s.cfg.WriteTimeout, status: http.StatusOK}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		sw.bodyDone.Store(true)
	} else {
		// A shallow copy: net/http keeps judging its own body after the
		// handler returns.
		r = r.WithContext(r.Context())
		r.Body = &trackedBody{ReadCloser: r.Body, w: sw}
	}
	s.mux.ServeHTTP(sw, r)
	if s.log != nil && r.URL.Path != "/metrics" && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
		s.log.Debug("http", "method", r.Method, "path", r.URL.Path, "status", sw.status, "duration", time.Since(start))
	}
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.b.Readiness()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
		rd.Reason = "not ready: " + rd.Reason
	}
	writeJSON(w, status, rd)
}

// node answers GET /v1/node. Where the node keeps its files and which
// external bus it uses (a URL may carry credentials) are for operators.
func (s *Server) node(w http.ResponseWriter, r *http.Request, p Principal) {
	info := s.b.Node(r.Context())
	info.Caller = &api.Caller{Name: p.Name, Role: p.Role}
	if !p.Operator() {
		info.Data = ""
		if info.Bus != "embedded" {
			info.Bus = "external"
		}
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request, p Principal) {
	opts, err := submitOptions(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var res api.SubmitResult
	// An archive may be large: its body keeps to the minimum-rate rule
	// rather than ReadTimeout.
	upload := &uploadBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(), grace: s.cfg.ReadTimeout, rate: s.cfg.UploadMinRate}
	switch ct := r.Header.Get("Content-Type"); {
	case strings.HasPrefix(ct, "application/json"):
		body, rerr := io.ReadAll(http.MaxBytesReader(w, upload, s.cfg.MaxJSONBytes))
		if rerr != nil {
			s.fail(w, r, rerr)
			return
		}
		res, err = s.b.SubmitSource(r.Context(), p, body, opts)
	case ct == "", strings.HasPrefix(ct, "application/gzip"), strings.HasPrefix(ct, "application/x-gzip"), strings.HasPrefix(ct, "application/octet-stream"):
		res, err = s.b.Submit(r.Context(), p, http.MaxBytesReader(w, upload, s.cfg.MaxArchiveBytes), opts)
	default:
		s.fail(w, r, Errorf(errMediaType, "body must be a tar.gz archive (Content-Type application/gzip) or a manifest with source.location (application/json), got %s", ct))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusCreated
	if res.Unchanged {
		status = http.StatusOK
	}
	writeJSON(w, status, res)
}

// submitOptions reads the attestations and origin headers.
func submitOptions(r *http.Request) (api.SubmitOptions, error) {
	var o api.SubmitOptions
	var err error
	if o.NoStart, err = noStart(r); err != nil {
		return o, err
	}
	if o.Attestations, err = attest.DecodeHeader(r.Header.Get(attest.HeaderName)); err != nil {
		return o, Errorf(ErrInvalid, "%v", err)
	}
	if o.Delegations, err = attest.DecodeDelegationsHeader(r.Header.Get(attest.DelegationsHeaderName)); err != nil {
		return o, Errorf(ErrInvalid, "%v", err)
	}
	if h := r.Header.Get(policy.OriginHeader); h != "" {
		if o.Origin, err = policy.ParseOriginClaim(h); err != nil {
			return o, Errorf(ErrInvalid, "%s header: %v", policy.OriginHeader, err)
		}
	}
	if o.Forwarded, err = attest.DecodeReceiptHeader(r.Header.Get(attest.ForwardHeaderName)); err != nil {
		return o, Errorf(ErrInvalid, "%v", err)
	}
	return o, nil
}

// seedService is POST /service as the KLYNTAR worker serves it: a service
// description in, "OK" or "ERR" out. The description is the seed's own
// service object (title, desc, archive or location; see seed.go) or a
// manifest with source.location, admitted, fetched and deployed like any
// other; the reason for an ERR is in the Andromeda-Reason header and the
// log.
func (s *Server) seedService(w http.ResponseWriter, r *http.Request) {
	p := Principal{Name: "anonymous", Role: api.RoleSubmitter}
	if token, ok := bearer(r); ok || !s.cfg.SeedAnonymous {
		var err error
		p, err = s.b.Authenticate(r.Context(), token)
		if errors.Is(err, ErrUnavailable) {
			e := toAPIError(err)
			seedAnswer(w, e.Status, e.Message)
			return
		}
		if err != nil || !ok {
			e := toAPIError(Errorf(errUnauthenticated, "a submitter token is required"))
			seedAnswer(w, e.Status, e.Message)
			return
		}
		if p.Role != api.RoleSubmitter && p.Role != api.RoleOperator {
			// A runtime token sits in a browser page: whoever reads it
			// there must not run code on the node with it.
			e := toAPIError(Errorf(ErrForbidden, "token %s has the %s role: submitting needs a submitter or operator token", p.Name, p.Role))
			seedAnswer(w, e.Status, e.Message)
			return
		}
	}
	body, err := s.readSeedBody(w, r)
	if err != nil {
		e := toAPIError(err)
		seedAnswer(w, e.Status, e.Message)
		return
	}
	opts, err := submitOptions(r)
	var res api.SubmitResult
	if err == nil {
		res, err = s.seedSubmit(r.Context(), p, body, opts)
	}
	if err != nil {
		e := toAPIError(err)
		if s.log != nil {
			s.log.Info("POST /service refused", "status", e.Status, "err", e.Error())
		}
		seedAnswer(w, e.Status, e.Error())
		return
	}
	seedAnswer(w, http.StatusOK, seedAdmitted(res))
}

func seedAnswer(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if reason != "" {
		w.Header().Set("Andromeda-Reason", strings.Join(strings.Fields(reason), " "))
	}
	w.WriteHeader(status)
	if status == http.StatusOK {
		io.WriteString(w, "OK")
	} else {
		io.WriteString(w, "ERR")
	}
}

func (s *Server) deps(w http.ResponseWriter, r *http.Request, p Principal) {
	deps, err := s.b.Deps(r.Context(), p, r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, deps)
}

func (s *Server) addDep(w http.ResponseWriter, r *http.Request, p Principal) {
	var req api.DepRequest
	if !s.decode(w, r, &req, false) {
		return
	}
	if err := s.b.AddDep(r.Context(), p, r.PathValue("name"), req.Package); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) removeDep(w http.ResponseWriter, r *http.Request, p Principal) {
	if err := s.b.RemoveDep(r.Context(), p, r.PathValue("name"), r.URL.Query().Get("package")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) policy(w http.ResponseWriter, r *http.Request, p Principal) {
	writeJSON(w, http.StatusOK, s.b.PolicyInfo(r.Context()))
}

func (s *Server) services(w http.ResponseWriter, r *http.Request, p Principal) {
	list, err := s.b.Services(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, list)
}

func (s *Server) service(w http.ResponseWriter, r *http.Request, p Principal) {
	svc, err := s.b.Service(r.Context(), p, r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, svc)
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request, p Principal) {
	if s.removeWith(w, r) {
		return
	}
	if err := s.b.Remove(r.Context(), r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) fire(w http.ResponseWriter, r *http.Request, p Principal) {
	var req api.FireRequest
	if !s.decode(w, r, &req, true) {
		return
	}
	if s.fireRun(w, r, req) {
		return
	}
	fire := s.b.Fire
	if req.Plan {
		if s.planner == nil {
			s.fail(w, r, Errorf(ErrInvalid, "plan: this node does not plan runs"))
			return
		}
		fire = s.planner.Plan
	}
	run, err := fire(r.Context(), r.PathValue("name"), req.Message)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// runs answers GET /v1/runs and /v1/services/{name}/runs with one page,
// {"runs": [...], "next": "..."}; next is absent on the last page.
func (s *Server) runs(w http.ResponseWriter, r *http.Request, p Principal) {
	if s.running(w, r, p) {
		return
	}
	q, err := runQuery(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	service := r.PathValue("name")
	if service == "" {
		service = r.URL.Query().Get("service")
	}
	list, err := s.b.Runs(r.Context(), p, service, q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if list.Runs == nil {
		list.Runs = []api.Run{}
	}
	writeJSON(w, http.StatusOK, list)
}

// runQuery reads a run listing's query parameters: limit, cursor, since
// and until.
func runQuery(r *http.Request) (api.RunQuery, error) {
	bad := func(msg string) (api.RunQuery, error) {
		return api.RunQuery{}, Errorf(ErrInvalid, "%s", msg)
	}
	v := r.URL.Query()
	var q api.RunQuery
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxListRuns {
			return bad("limit: must be an integer from 1 to " + strconv.Itoa(store.MaxListRuns))
		}
		q.Limit = n
	}
	if c := v.Get("cursor"); c != "" {
		if _, err := store.ParseCursor(c); err != nil {
			return bad("cursor: must be the next value of an earlier page, as it came")
		}
		q.Cursor = c
	}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if val := v.Get(t.name); val != "" {
			var err error
			if *t.to, err = time.Parse(time.RFC3339Nano, val); err != nil {
				return bad(t.name + ": must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
			}
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return bad("until: must be after since")
	}
	return q, nil
}

// WhyBackend answers "why didn't it run?": every trigger evaluation of a
// service since a time and what became of it. A Backend that implements
// it has GET /v1/services/{name}/why, for the service's owner and the
// operator. Safe for concurrent use.
type WhyBackend interface {
	Why(ctx context.Context, p Principal, service string, since time.Time) (api.Why, error)
}

// whyRoutes mounts the why question when the backend answers it.
func (s *Server) whyRoutes() {
	wb, ok := s.b.(WhyBackend)
	if !ok {
		return
	}
	s.handle("GET /v1/services/{name}/why", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		since, err := whySince(r.URL.Query().Get("since"), time.Now())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		why, err := wb.Why(r.Context(), p, r.PathValue("name"), since)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, why)
	})
}

// maxWhyWindow bounds how far back a why question looks.
const maxWhyWindow = 31 * 24 * time.Hour

// whySince reads the since of a why question: a duration back from now
// ("1h", "90m") or an RFC 3339 time; "" is zero (the backend's default).
func whySince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	rule := "since: must be a duration back from now from 1s to 744h (1h, 30m) or an RFC 3339 time in the past, e.g. 2026-01-02T15:04:05Z"
	if d, err := time.ParseDuration(v); err == nil {
		if d < time.Second || d > maxWhyWindow {
			return time.Time{}, Errorf(ErrInvalid, "%s", rule)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || !t.Before(now) {
		return time.Time{}, Errorf(ErrInvalid, "%s", rule)
	}
	if now.Sub(t) > maxWhyWindow {
		t = now.Add(-maxWhyWindow)
	}
	return t, nil
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, p Principal) {
	run, err := s.b.Run(r.Context(), p, r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p Principal) {
	var req api.TokenRequest
	if !s.decode(w, r, &req, false) {
		return
	}
	t, err := s.b.CreateToken(r.Context(), req.Name, req.Role)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

// NATSUserBackend is the node's side of the credentials of NATS clients
// (/v1/nats/users, operator only). Safe for concurrent use; like Backend,
// its errors name a kind, never a status.
type NATSUserBackend interface {
	CreateNATSUser(ctx context.Context, req api.NATSUserRequest) (api.NATSUser, error)
	NATSUsers(ctx context.Context) ([]api.NATSUser, error)
	RemoveNATSUser(ctx context.Context, name string) error
}

// natsUserBackend is the Backend's NATSUserBackend, or an error saying there is
// none.
func (s *Server) natsUserBackend() (NATSUserBackend, error) {
	if nb, ok := s.b.(NATSUserBackend); ok {
		return nb, nil
	}
	return nil, Errorf(ErrConflict, "this node issues no NATS credentials")
}

func (s *Server) createNATSUser(w http.ResponseWriter, r *http.Request, p Principal) {
	var req api.NATSUserRequest
	if !s.decode(w, r, &req, false) {
		return
	}
	nb, err := s.natsUserBackend()
	var u api.NATSUser
	if err == nil {
		u, err = nb.CreateNATSUser(r.Context(), req)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}

func (s *Server) natsUsers(w http.ResponseWriter, r *http.Request, p Principal) {
	nb, err := s.natsUserBackend()
	var us []api.NATSUser
	if err == nil {
		us, err = nb.NATSUsers(r.Context())
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, us)
}

func (s *Server) removeNATSUser(w http.ResponseWriter, r *http.Request, p Principal) {
	nb, err := s.natsUserBackend()
	if err == nil {
		err = nb.RemoveNATSUser(r.Context(), r.PathValue("name"))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decode reads a JSON body strictly (strictjson); an empty body is allowed
// when optional.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxJSONBytes))
	if err != nil {
		s.fail(w, r, err)
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 && optional {
		return true
	}
	if err := strictjson.Unmarshal(body, v); err != nil {
		s.fail(w, r, Errorf(ErrInvalid, "request body: %s", err))
		return false
	}
	return true
}

// writeList writes a JSON array: [] rather than null when empty.
func writeList[T any](w http.ResponseWriter, v []T) {
	if v == nil {
		v = []T{}
	}
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
