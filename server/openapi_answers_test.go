package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/flow"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// TestOpenAPIDescribesAnswers: real answers of the server (from a test
// backend that answers like a node) validate against the API document
// with kin-openapi's openapi3filter: the status is one the operation
// documents, the Content-Type one it gives for that status, the body
// matches its schema.
func TestOpenAPIDescribesAnswers(t *testing.T) {
	_, router := loadOpenAPI(t)
	s := New(&answerBackend{}, Config{SeedEndpoint: true}, nil)
	for _, tc := range []struct {
		name, method, path, token, ctype, body string
		status                                 int
	}{
		{"liveness", "GET", "/healthz", "", "", "", 200},
		{"readiness", "GET", "/readyz", "", "", "", 200},
		{"this document", "GET", "/v1/openapi.json", "", "", "", 200},
		{"node as operator", "GET", "/v1/node", "op", "", "", 200},
		{"node as submitter", "GET", "/v1/node", "sub", "", "", 200},
		{"services", "GET", "/v1/services", "sub", "", "", 200},
		{"no such service", "GET", "/v1/services/nope", "sub", "", "", 404},
		{"submit text", "POST", "/v1/services", "sub", "text/plain", "x", 415},
		{"submit a bad manifest", "POST", "/v1/services", "sub", "application/json", `{"name":"greeter"}`, 400},
		{"fire, unknown field", "POST", "/v1/services/greeter/fire", "op", "application/json", `{"mesage":1}`, 400},
		{"fire as submitter", "POST", "/v1/services/greeter/fire", "sub", "application/json", `{}`, 403},
		{"policy", "GET", "/v1/policy", "op", "", "", 200},
		{"offer", "GET", "/v1/offer", "sub", "", "", 200},
		{"apply a flow in XML", "POST", "/v1/flows", "sub", "application/xml", "<flow/>", 415},
		{"seed endpoint refuses", "POST", "/service", "sub", "application/json", `{"name":"greeter"}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, req := answer(s, tc.method, tc.path, tc.token, tc.ctype, tc.body)
			if w.Code != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, w.Code, w.Body, tc.status)
			}
			validateAnswer(t, router, req, w)
		})
	}
}

// TestOpenAPIRequestExamples: the document's examples of the main request
// bodies are taken as they are, and the answers to them validate: the
// manifest passes the manifest's checks and the flow documents the flow
// parser (answerBackend), the rest the server's strict decoder.
func TestOpenAPIRequestExamples(t *testing.T) {
	doc, router := loadOpenAPI(t)
	s := New(&answerBackend{}, Config{SeedEndpoint: true}, nil)
	for _, tc := range []struct {
		method, pattern, path, token, ctype string
	}{
		{"POST", "/v1/services", "/v1/services", "sub", "application/json"},
		{"POST", "/service", "/service", "sub", "application/json"},
		{"POST", "/v1/services/{name}/fire", "/v1/services/greeter/fire", "op", "application/json"},
		{"POST", "/v1/tokens", "/v1/tokens", "op", "application/json"},
		{"POST", "/v1/flows", "/v1/flows", "sub", "application/yaml"},
		{"POST", "/v1/flows", "/v1/flows", "sub", "application/json"},
		{"POST", "/v1/flows", "/v1/flows", "sub", "application/toml"},
	} {
		examples := requestExamples(t, doc, tc.method, tc.pattern, tc.ctype)
		if len(examples) == 0 {
			t.Errorf("%s %s has no example of a %s body", tc.method, tc.pattern, tc.ctype)
		}
		for name, body := range examples {
			t.Run(tc.method+" "+tc.pattern+" "+tc.ctype+" "+name, func(t *testing.T) {
				w, req := answer(s, tc.method, tc.path, tc.token, tc.ctype, body)
				if w.Code/100 != 2 {
					t.Fatalf("%s %s with the example %s = %d %s, want 2xx", tc.method, tc.path, name, w.Code, w.Body)
				}
				validateAnswer(t, router, req, w)
			})
		}
	}
}

// TestOpenAPIDocumentsAuth: every operation the document says needs a
// token answers 401 without one, and 403 to a token of the runtime role
// (which connects a browser runtime and nothing else); both answers
// validate against the operation, so each documents them.
func TestOpenAPIDocumentsAuth(t *testing.T) {
	doc, router := loadOpenAPI(t)
	s := New(&answerBackend{}, Config{SeedEndpoint: true}, nil)
	n := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			security := doc.Security
			if op.Security != nil {
				security = *op.Security
			}
			// Without security requirements the operation is open; with
			// an empty one among others, a setting opens it (POST /service
			// with seed.anonymous, /metrics without http.metrics.access:
			// token).
			open := len(security) == 0
			optional := slices.ContainsFunc(security, func(r openapi3.SecurityRequirement) bool { return len(r) == 0 })
			// Path parameters get a value of one segment; the browser
			// runtime's worker script is a value its parameter lists.
			target := strings.NewReplacer("{path}", "worker.js", "{name}", "x", "{id}", "y", "{run}", "z", "{target}", "t", "{topic}", "u").Replace(path)
			for _, token := range []string{"", "rt"} {
				w, req := answer(s, method, target, token, "", "")
				// What an open route answers past the refusal may come from
				// a stand-in of the test backend (/metrics, the browser
				// runtime): only refusals are validated here.
				switch {
				case open && (w.Code == 401 || w.Code == 403):
					t.Errorf("%s %s with token %q = %d, but the document lets anyone call it", method, path, token, w.Code)
					continue
				case open || optional:
					continue
				case token == "" && w.Code != 401:
					t.Errorf("%s %s without a token = %d %s, want 401", method, path, w.Code, w.Body)
				case token != "" && w.Code != 403:
					t.Errorf("%s %s with a runtime token = %d %s, want 403", method, path, w.Code, w.Body)
				}
				n++
				validateAnswer(t, router, req, w)
			}
		}
	}
	if n < 100 {
		t.Errorf("only %d refusals checked", n)
	}
}

// TestOpenAPIErrorExamples: every problem details answer an operation
// documents has an example of its status, so that a reader sees what
// each refusal looks like.
func TestOpenAPIErrorExamples(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code, ref := range op.Responses.Map() {
				media := ref.Value.Content[problemType]
				if media == nil || code[0] != '4' && code[0] != '5' {
					continue
				}
				values := []any{media.Example}
				for _, ex := range media.Examples {
					values = append(values, ex.Value.Value)
				}
				if !slices.ContainsFunc(values, func(v any) bool {
					m, _ := v.(map[string]any)
					return m != nil && fmt.Sprint(m["status"]) == code
				}) {
					t.Errorf("%s %s: the %s answer has no example of status %s", method, path, code, code)
				}
			}
		}
	}
}

// loadOpenAPI loads and validates the API document, and gives a router
// to its operations.
func loadOpenAPI(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	l, err := openapiLoaded()
	if err != nil {
		t.Fatal(err)
	}
	return l.doc, l.router
}

type loadedOpenAPI struct {
	doc    *openapi3.T
	router routers.Router
}

// openapiLoaded loads the API document once for the tests that read it:
// validating it, examples included, takes seconds.
//
// The validation is kin-openapi's defaults with every problem listed at
// once: nothing is turned off. Schema formats are not limited to those
// the OpenAPI specification defines (EnableSchemaFormatValidation): in
// 3.1, format is an annotation of JSON Schema and other values are
// allowed. The router is kin-openapi's legacy one (no dependency beyond
// kin-openapi); it validates the document again, without the examples,
// which were just checked.
var openapiLoaded = sync.OnceValues(func() (loadedOpenAPI, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapiDoc)
	if err != nil {
		return loadedOpenAPI{}, fmt.Errorf("load openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableMultiError()); err != nil {
		return loadedOpenAPI{}, fmt.Errorf("openapi.json does not validate: %w", err)
	}
	router, err := legacy.NewRouter(doc, openapi3.DisableExamplesValidation())
	if err != nil {
		return loadedOpenAPI{}, fmt.Errorf("route openapi.json: %w", err)
	}
	return loadedOpenAPI{doc, router}, nil
})

// requestExamples are the examples of an operation's request body in one
// media type, by name ("example" for a lone one), as the bytes to send.
func requestExamples(t *testing.T, doc *openapi3.T, method, path, ctype string) map[string]string {
	t.Helper()
	item := doc.Paths.Value(path)
	if item == nil || item.GetOperation(method) == nil || item.GetOperation(method).RequestBody == nil {
		t.Fatalf("%s %s: no request body in the API document", method, path)
	}
	media := item.GetOperation(method).RequestBody.Value.Content.Get(ctype)
	if media == nil {
		t.Fatalf("%s %s: no %s request body in the API document", method, path, ctype)
	}
	values := map[string]any{}
	if media.Example != nil {
		values["example"] = media.Example
	}
	for name, ex := range media.Examples {
		values[name] = ex.Value.Value
	}
	bodies := map[string]string{}
	for name, v := range values {
		if s, ok := v.(string); ok && ctype != "application/json" {
			bodies[name] = s
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s %s: example %s: %v", method, path, name, err)
		}
		bodies[name] = string(b)
	}
	return bodies
}

// answer serves one request and records the answer.
func answer(s *Server, method, path, token, ctype, body string) (*httptest.ResponseRecorder, *http.Request) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w, req
}

// validateAnswer checks the recorded answer to req against the document's
// operation for req, its status included.
func validateAnswer(t *testing.T, router routers.Router, req *http.Request, w *httptest.ResponseRecorder) {
	t.Helper()
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: not in the API document: %v", req.Method, req.URL.Path, err)
	}
	// An answer that sets no Content-Type (GET /healthz) has the one
	// net/http sniffs from its first bytes; the recorder leaves it empty.
	header := w.Header().Clone()
	if header.Get("Content-Type") == "" && w.Body.Len() > 0 {
		header.Set("Content-Type", http.DetectContentType(w.Body.Bytes()))
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 w.Code,
		Header:                 header,
		Body:                   io.NopCloser(strings.NewReader(w.Body.String())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s answered %d %s: not as the API document says: %v", req.Method, req.URL.Path, w.Code, w.Header().Get("Content-Type"), err)
	}
}

// answerBackend answers like a node: a node with drivers, services with
// their decision, a token with its secret, a flow with its document. It
// checks a submitted manifest and a flow document as the node does
// first. "rt" is a token of the runtime role.
type answerBackend struct{ browserBackend }

func (b *answerBackend) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "rt" {
		return Principal{Name: "browser", Role: api.RoleRuntime}, nil
	}
	return b.browserBackend.Authenticate(ctx, token)
}

var answerTime = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

func answerService() api.Service {
	return api.Service{
		Name: "greeter", Version: "1.0.0", Digest: "sha256:5f0c6e", Owner: "alice",
		Manifest:    json.RawMessage(`{"name":"greeter","version":"1.0.0","runtime":{"driver":"wasm"}}`),
		SubmittedAt: answerTime, Status: "deployed", Phase: "started", Revision: 1,
		Decision: api.Decision{
			Verdict: "run", Driver: "wasm", Network: "none",
			Reasons: []api.Reason{{Rule: "driver", OK: true, Detail: "wasm: the manifest's runtime"}},
		},
	}
}

func answerRun(name string) api.Run {
	return api.Run{ID: "r_01JF3Q8X2K", Service: name, Version: "1.0.0", Start: answerTime, Duration: 3 * time.Millisecond, Outcome: "ok", Attempts: 1}
}

func (b *answerBackend) Node(ctx context.Context) api.NodeInfo {
	return api.NodeInfo{
		Version: "0.9.0", Started: answerTime, Data: "/var/lib/andromeda", Bus: "embedded", Services: 1,
		Drivers: []api.DriverStatus{
			{Name: "wasm", Enabled: true, Offer: json.RawMessage(`{"languages":{"wasm":"wasip1"}}`)},
			{Name: "docker", Enabled: false, Reason: "no Docker Engine at /var/run/docker.sock"},
		},
		NodeKey: "ed25519:3q2+7w==",
	}
}

func (b *answerBackend) Offer(ctx context.Context) (api.Offer, error) {
	return api.Offer{
		Node: "fake", Properties: map[string]any{"andromeda.node.name": "fake"},
		Drivers: []api.OfferDriver{{Name: "wasm", Enabled: true, Languages: map[string]string{"wasm": "wasip1"}}},
	}, nil
}

func (b *answerBackend) Services(ctx context.Context, p Principal) ([]api.Service, error) {
	return []api.Service{answerService()}, nil
}

func (b *answerBackend) SubmitSource(ctx context.Context, p Principal, m []byte, o api.SubmitOptions) (api.SubmitResult, error) {
	if _, err := manifest.Check(m, manifest.JSON); err != nil {
		return api.SubmitResult{}, err
	}
	return api.SubmitResult{Service: answerService()}, nil
}

func (b *answerBackend) Fire(ctx context.Context, name string, m json.RawMessage) (api.Run, error) {
	return answerRun(name), nil
}

func (b *answerBackend) FireRun(ctx context.Context, name string, m json.RawMessage, args []string) (api.Run, error) {
	return answerRun(name), nil
}

func (b *answerBackend) Plan(ctx context.Context, name string, m json.RawMessage) (api.Run, error) {
	r := answerRun(name)
	r.Plan = true
	return r, nil
}

func (b *answerBackend) CreateToken(ctx context.Context, name, role string) (api.Token, error) {
	return api.Token{Name: name, Role: role, Secret: "adt_7Qm2bX9", Created: answerTime}, nil
}

func (b *answerBackend) PolicyInfo(ctx context.Context) api.PolicyInfo {
	return api.PolicyInfo{Digest: "sha256:9a41c2", Policy: json.RawMessage(`{"drivers":["wasm"]}`), NodeKey: "ed25519:3q2+7w=="}
}

func (b *answerBackend) ApplyFlow(ctx context.Context, p Principal, format string, doc []byte, dryRun bool) (api.FlowApplied, error) {
	f, _ := strictdoc.FormatOf("flow." + format)
	if _, err := flow.Parse(f, doc); err != nil {
		return api.FlowApplied{}, &Error{Kind: ErrInvalid, Msg: err.Error()}
	}
	return api.FlowApplied{Created: true, Flow: api.Flow{
		ID: "line", Version: "1.0.0", Owner: p.Name, Digest: "sha256:0b7d1e", Applied: answerTime,
		Modules:  []api.FlowModule{{ID: "a", Service: "tag", Runtime: "wasm"}, {ID: "b", Service: "keep", Runtime: "wasm"}},
		Wires:    []api.FlowWire{{From: "a", To: "b"}},
		Document: json.RawMessage(`{"id":"line","version":"1.0.0","modules":[{"id":"a","service":"tag"},{"id":"b","service":"keep"}],"wires":[{"from":"a","to":"b"}]}`),
	}}, nil
}

func (b *answerBackend) SubmitSeed(ctx context.Context, p Principal, obj api.SeedService, o api.SubmitOptions) (api.SubmitResult, error) {
	return api.SubmitResult{Service: answerService()}, nil
}
