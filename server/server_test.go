package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/store"
)

// fakeBackend is a unit-test stand-in for the node: the real node is
// exercised end to end in package node.
type fakeBackend struct {
	submitErr error
	fireErr   error
	fired     json.RawMessage
	grace     time.Duration // the last stop's (lifecycle_test.go)
	purge     bool          // the last removal's
}

func (f *fakeBackend) Authenticate(ctx context.Context, token string) (Principal, error) {
	switch token {
	case "op":
		return Principal{Name: "operator", Role: api.RoleOperator}, nil
	case "sub":
		return Principal{Name: "alice", Role: api.RoleSubmitter}, nil
	}
	return Principal{}, store.ErrNotFound
}
func (f *fakeBackend) SubmitSource(ctx context.Context, p Principal, m []byte, o api.SubmitOptions) (api.SubmitResult, error) {
	return api.SubmitResult{}, f.submitErr
}
func (f *fakeBackend) Deps(ctx context.Context, p Principal, s string) ([]api.Dep, error) {
	return nil, nil
}
func (f *fakeBackend) AddDep(ctx context.Context, p Principal, s, pkg string) error    { return nil }
func (f *fakeBackend) RemoveDep(ctx context.Context, p Principal, s, pkg string) error { return nil }
func (f *fakeBackend) PolicyInfo(ctx context.Context) api.PolicyInfo                   { return api.PolicyInfo{} }
func (f *fakeBackend) Submit(ctx context.Context, p Principal, r io.Reader, o api.SubmitOptions) (api.SubmitResult, error) {
	if _, err := io.ReadAll(r); err != nil {
		return api.SubmitResult{}, err
	}
	return api.SubmitResult{}, f.submitErr
}
func (f *fakeBackend) Services(ctx context.Context, p Principal) ([]api.Service, error) {
	return nil, nil
}
func (f *fakeBackend) Service(ctx context.Context, p Principal, name string) (api.Service, error) {
	return api.Service{}, fmt.Errorf("service %q: %w", name, store.ErrNotFound)
}
func (f *fakeBackend) Remove(ctx context.Context, name string) error { return nil }
func (f *fakeBackend) Fire(ctx context.Context, name string, m json.RawMessage) (api.Run, error) {
	f.fired = m
	if f.fireErr != nil {
		return api.Run{}, f.fireErr
	}
	return api.Run{ID: "r1", Service: name, Outcome: "ok"}, nil
}
func (f *fakeBackend) Runs(ctx context.Context, p Principal, s string, q api.RunQuery) (api.RunList, error) {
	return api.RunList{}, nil
}
func (f *fakeBackend) Run(ctx context.Context, p Principal, s, id string) (api.Run, error) {
	return api.Run{}, nil
}
func (f *fakeBackend) CreateToken(ctx context.Context, name, role string) (api.Token, error) {
	return api.Token{Name: name, Role: role}, nil
}
func (f *fakeBackend) Node(ctx context.Context) api.NodeInfo { return api.NodeInfo{} }
func (f *fakeBackend) Ready() error                          { return nil }
func (f *fakeBackend) Readiness() api.Readiness              { return api.Readiness{Ready: true} }
func (f *fakeBackend) Metrics() http.Handler                 { return http.NotFoundHandler() }

func do(t *testing.T, h http.Handler, method, path, token, ctype, body string) (int, api.Error) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var e api.Error
	json.Unmarshal(w.Body.Bytes(), &e)
	return w.Code, e
}

func TestRoutes(t *testing.T) {
	fb := &fakeBackend{}
	s := New(fb, Config{MaxArchiveBytes: 64, MaxJSONBytes: 64}, nil)
	for _, tc := range []struct {
		name, method, path, token, ctype, body string
		status                                 int
		msg                                    string
	}{
		{"no token", "GET", "/v1/services", "", "", "", 401, "missing bearer token"},
		{"bad token", "GET", "/v1/services", "nope", "", "", 401, "invalid token"},
		{"submitter fires", "POST", "/v1/services/x/fire", "sub", "", "", 403, "operator role"},
		{"submitter makes tokens", "POST", "/v1/tokens", "sub", "", `{"name":"x","role":"operator"}`, 403, ""},
		{"operator fires", "POST", "/v1/services/x/fire", "op", "", `{"message": {"b":2,  "a":[1.50]} }`, 200, ""},
		{"fire unknown field", "POST", "/v1/services/x/fire", "op", "", `{"mesage":1}`, 400, `request body: mesage: unknown field "mesage"`},
		{"token wrong type", "POST", "/v1/tokens", "op", "", `{"name":1}`, 400, "request body: name: must be a string (quote 1 to make it one)"},
		{"token empty body", "POST", "/v1/tokens", "op", "", " \n", 400, "request body: must not be empty"},
		{"fire not json", "POST", "/v1/services/x/fire", "op", "", `{"message":`, 400, "request body: json syntax: line 1, column 12: unexpected end of input"},
		{"fire trailing", "POST", "/v1/services/x/fire", "op", "", `{}{}`, 400, "request body: json syntax: line 1, column 3: trailing data after the document"},
		{"fire closing bracket after", "POST", "/v1/services/x/fire", "op", "", `{}}`, 400, "request body: json syntax: line 1, column 3: trailing data after the document"},
		{"json too big", "POST", "/v1/services/x/fire", "op", "", `{"message":"` + strings.Repeat("x", 100) + `"}`, 413, "larger than"},
		{"archive too big", "POST", "/v1/services", "sub", "application/gzip", strings.Repeat("x", 100), 413, "larger than"},
		{"wrong content type", "POST", "/v1/services", "sub", "text/plain", "x", 415, "tar.gz"},
		{"bad limit", "GET", "/v1/runs?limit=0", "sub", "", "", 400, "limit: must be"},
		{"not found", "GET", "/v1/services/nope", "sub", "", "", 404, "not found"},
		{"no endpoint", "GET", "/v2/x", "", "", "", 404, "no such endpoint"},
		{"health without token", "GET", "/healthz", "", "", "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, e := do(t, s, tc.method, tc.path, tc.token, tc.ctype, tc.body)
			if code != tc.status || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("%s %s = %d %q, want %d mentioning %q", tc.method, tc.path, code, e.Message, tc.status, tc.msg)
			}
		})
	}
	if string(fb.fired) != `{"b":2,  "a":[1.50]}` {
		t.Fatalf("fired message = %s, want the request's byte for byte", fb.fired)
	}
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
	}{
		{manifest.Errors{{Path: "name", Rule: "must match"}}, 400},
		{fmt.Errorf("wrapped: %w", &archive.Error{Entry: "../x", Rule: "escapes", Kind: archive.ErrUnsafe}), 400},
		{&archive.Error{Rule: "too big", Kind: archive.ErrTooLarge}, 413},
		{&archive.Error{Rule: "not gzip", Kind: archive.ErrFormat}, 400},
		{manifest.ErrNoManifest, 400},
		{fmt.Errorf("x: %w", store.ErrNotFound), 404},
		{Errorf(ErrInvalid, "message: must be valid JSON"), 400},
		{Errorf(ErrForbidden, "service s belongs to bob"), 403},
		{Errorf(ErrConflict, "version"), 409},
		{fmt.Errorf("deploy: %w", ErrConflict), 409},
		{Errorf(ErrRefused, "admission: s 1 was rejected"), 422},
		{Errorf(ErrUnusable, "source: fetch"), 422},
		{&Error{Kind: ErrBusy, Msg: "skipped", RetryAfter: time.Second}, 429},
		{&Error{Kind: ErrUnavailable, Msg: "not recorded", RetryAfter: 5 * time.Second}, 503},
		{&Error{Kind: errors.New("a kind of no one's"), Msg: "odd"}, 500},
		{context.DeadlineExceeded, 504},
		{errors.New("disk on fire"), 500},
	} {
		got := toAPIError(tc.err)
		if got.Status != tc.status || got.Message != tc.err.Error() && tc.status != 400 {
			t.Errorf("toAPIError(%v) = %d %q, want %d %q", tc.err, got.Status, got.Message, tc.status, tc.err.Error())
		}
	}
	e := toAPIError(manifest.Errors{{Path: "a", Rule: "x"}, {Path: "b", Rule: "y"}})
	if len(e.Problems) != 2 || e.Problems[0] != "a: x" {
		t.Fatalf("problems = %q", e.Problems)
	}
	// Retry-After is whole seconds, rounded up.
	if e := toAPIError(&Error{Kind: ErrBusy, RetryAfter: 1500 * time.Millisecond}); e.RetryAfter != 2 {
		t.Fatalf("RetryAfter 1.5s = %d s, want 2", e.RetryAfter)
	}
}

// TestProblemDetails: every error answer is an RFC 9457 problem details
// object, with the members of its own that the error carries.
func TestProblemDetails(t *testing.T) {
	refusal := &Error{
		Kind: ErrRefused, Msg: "admission: s 1.0.0 was rejected",
		Decision: &api.Decision{Verdict: "reject", Reasons: []api.Reason{{Rule: "network", Detail: "cannot grant network any"}}},
		Problems: []string{"network: cannot grant network any"},
	}
	skipped := &Error{Kind: ErrBusy, Msg: "skipped: concurrency limit reached", Run: &api.Run{ID: "r1", Service: "s", Outcome: "skipped"}, RetryAfter: time.Second}
	for _, tc := range []struct {
		name, method, path, token, ctype, body string
		fb                                     fakeBackend
		status                                 int
		title, detail, retryAfter              string
		check                                  func(e map[string]json.RawMessage) bool
	}{
		{name: "not found", method: "GET", path: "/v1/services/nope", token: "sub",
			status: 404, title: "Not Found", detail: `service "nope": not found`},
		{name: "no endpoint", method: "GET", path: "/v2/x",
			status: 404, title: "Not Found", detail: "no such endpoint: GET /v2/x"},
		{name: "refused with decision", method: "POST", path: "/v1/services", token: "sub", ctype: "application/gzip", body: "x",
			fb:     fakeBackend{submitErr: refusal},
			status: 422, title: "Unprocessable Entity", detail: refusal.Msg,
			check: func(e map[string]json.RawMessage) bool {
				return strings.Contains(string(e["decision"]), `"verdict": "reject"`) && strings.Contains(string(e["problems"]), "network: cannot grant")
			}},
		{name: "skipped with run", method: "POST", path: "/v1/services/s/fire", token: "op",
			fb:     fakeBackend{fireErr: skipped},
			status: 429, title: "Too Many Requests", detail: skipped.Msg, retryAfter: "1",
			check: func(e map[string]json.RawMessage) bool {
				var run api.Run
				return json.Unmarshal(e["run"], &run) == nil && run.ID == "r1" && run.Outcome == "skipped"
			}},
		{name: "invalid manifest with problems", method: "POST", path: "/v1/services", token: "sub", ctype: "application/gzip", body: "x",
			fb:     fakeBackend{submitErr: manifest.Errors{{Path: "name", Rule: "required"}, {Path: "triggers[0].every", Rule: "must be a duration"}}},
			status: 400, title: "Bad Request", detail: "invalid manifest",
			check: func(e map[string]json.RawMessage) bool {
				var p []string
				return json.Unmarshal(e["problems"], &p) == nil && len(p) == 2 && p[0] == "name: required"
			}},
		{name: "missing token", method: "GET", path: "/v1/services",
			status: 401, title: "Unauthorized", detail: "missing bearer token: send Authorization: Bearer <token>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(&tc.fb, Config{}, nil)
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if ct := w.Header().Get("Content-Type"); w.Code != tc.status || ct != "application/problem+json" {
				t.Fatalf("%s %s = %d %s, want %d application/problem+json", tc.method, tc.path, w.Code, ct, tc.status)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tc.retryAfter)
			}
			var e map[string]json.RawMessage
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			var p api.Error
			json.Unmarshal(w.Body.Bytes(), &p)
			if p.Type != "about:blank" || p.Title != tc.title || p.Status != tc.status || p.Message != tc.detail {
				t.Errorf("problem = type %q title %q status %d detail %q; want about:blank %q %d %q", p.Type, p.Title, p.Status, p.Message, tc.title, tc.status, tc.detail)
			}
			if _, old := e["error"]; old {
				t.Errorf("body still has the old error member: %s", w.Body)
			}
			if tc.check != nil && !tc.check(e) {
				t.Errorf("extension members missing or wrong: %s", w.Body)
			}
		})
	}
}

// TestOpenAPIRoutesExist checks every operation the OpenAPI document
// describes is served.
func TestOpenAPIRoutesExist(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	s := New(&browserBackend{}, Config{SeedEndpoint: true}, nil)
	n := 0
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			n++
			p := strings.NewReplacer("{name}", "x", "{id}", "y").Replace(path)
			_, e := do(t, s, strings.ToUpper(method), p, "op", "application/json", "{}")
			if strings.Contains(e.Message, "no such endpoint") {
				t.Errorf("%s %s is documented but not served", strings.ToUpper(method), path)
			}
		}
	}
	if n < 15 {
		t.Fatalf("only %d operations documented", n)
	}
}

// infoBackend answers /v1/node and /metrics with something to hide.
type infoBackend struct{ fakeBackend }

func (infoBackend) Node(ctx context.Context) api.NodeInfo {
	return api.NodeInfo{Version: "1", Data: "/var/lib/andromeda", Bus: "nats://user:secret@bus:4222"}
}

func (infoBackend) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "andromeda_services 1\n") })
}

func TestNodeInfoForOperators(t *testing.T) {
	s := New(&infoBackend{}, Config{}, nil)
	for _, tc := range []struct {
		token, data, bus string
	}{
		{"op", "/var/lib/andromeda", "nats://user:secret@bus:4222"},
		{"sub", "", "external"},
	} {
		req := httptest.NewRequest("GET", "/v1/node", nil)
		req.Header.Set("Authorization", "Bearer "+tc.token)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		var info api.NodeInfo
		if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil || w.Code != 200 {
			t.Fatalf("GET /v1/node as %s = %d %s", tc.token, w.Code, w.Body)
		}
		if info.Data != tc.data || info.Bus != tc.bus || strings.Contains(w.Body.String(), "secret") != (tc.token == "op") {
			t.Errorf("GET /v1/node as %s: data_dir %q, bus %q; want %q, %q", tc.token, info.Data, info.Bus, tc.data, tc.bus)
		}
	}
}

func TestMetricsAccess(t *testing.T) {
	for _, tc := range []struct {
		name   string
		token  bool
		caller string
		status int
	}{
		{"open, anonymous", false, "", 200},
		{"token, anonymous", true, "", 401},
		{"token, submitter", true, "sub", 403},
		{"token, operator", true, "op", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(&infoBackend{}, Config{MetricsToken: tc.token}, nil)
			req := httptest.NewRequest("GET", "/metrics", nil)
			if tc.caller != "" {
				req.Header.Set("Authorization", "Bearer "+tc.caller)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tc.status || (tc.status == 200) != strings.Contains(w.Body.String(), "andromeda_services") {
				t.Fatalf("GET /metrics = %d %s, want %d", w.Code, w.Body, tc.status)
			}
		})
	}
}

// TestOpenAPIDocumentsRefusals: every operation may be refused at the
// connection (429, 503) before it is routed.
func TestOpenAPIDocumentsRefusals(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			if method == "parameters" {
				continue
			}
			var op struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			for _, code := range []string{"429", "503"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s %s does not document %s", strings.ToUpper(method), path, code)
				}
			}
		}
	}
}

// TestOpenAPIErrorsAreProblems: every error answer the document describes
// is problem details, but for the two that are not by design (/readyz
// answers its report, POST /service the KLYNTAR worker's ERR); and every
// $ref in it resolves.
func TestOpenAPIErrorsAreProblems(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	resolve := func(ref string) (any, bool) {
		var v any = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[part]; !ok {
				return nil, false
			}
		}
		return v, true
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if _, ok := resolve(ref); !ok {
					t.Errorf("$ref %s does not resolve", ref)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)

	paths, _ := doc["paths"].(map[string]any)
	for path, ops := range paths {
		for method, op := range ops.(map[string]any) {
			o, _ := op.(map[string]any) // not "parameters"
			responses, _ := o["responses"].(map[string]any)
			for code, r := range responses {
				// By design not problem details: /readyz answers its report,
				// POST /service the KLYNTAR worker's ERR, and the browser
				// runtime's WebSocket a plain 426 to a request without an
				// upgrade.
				if code[0] != '4' && code[0] != '5' || path == "/readyz" || path == "/service" || path == "/runtime/browser/{path}" && code == "426" {
					continue
				}
				resp := r.(map[string]any)
				if ref, ok := resp["$ref"].(string); ok {
					v, _ := resolve(ref)
					resp, _ = v.(map[string]any)
				}
				content, _ := resp["content"].(map[string]any)
				media, _ := content["application/problem+json"].(map[string]any)
				schema, _ := media["schema"].(map[string]any)
				if len(content) != 1 || schema["$ref"] != "#/components/schemas/Error" {
					t.Errorf("%s %s answers %s with %v, want application/problem+json of the Error schema", strings.ToUpper(method), path, code, content)
				}
			}
		}
	}
}
