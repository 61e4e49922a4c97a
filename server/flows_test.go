package server

import (
	"context"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/store"
)

var _ FlowBackend = (*fakeBackend)(nil)

func (f *fakeBackend) ApplyFlow(ctx context.Context, p Principal, format string, doc []byte, dryRun bool) (api.FlowApplied, error) {
	if string(doc) == "bad" {
		return api.FlowApplied{}, &Error{Kind: ErrInvalid, Msg: "invalid flow: 1 problem(s)", Problems: []string{"id: required"}}
	}
	return api.FlowApplied{Flow: api.Flow{ID: "f", Version: "1.0.0", Owner: p.Name}, Created: format == "yaml", DryRun: dryRun}, nil
}

func (f *fakeBackend) Flows(ctx context.Context, p Principal, runtime string) ([]api.Flow, error) {
	return nil, nil
}

func (f *fakeBackend) Flow(ctx context.Context, p Principal, id string) (api.Flow, error) {
	if id != "f" {
		return api.Flow{}, store.ErrNotFound
	}
	return api.Flow{ID: "f"}, nil
}

func (f *fakeBackend) RemoveFlow(ctx context.Context, p Principal, id string) error {
	if id != "f" {
		return store.ErrNotFound
	}
	return nil
}

// TestFlowRoutes: a flow document's media type picks its format (another
// is 415); a new flow is 201, a dry run 200; a bad dry_run is 400; the
// backend's problems come back one a line; any token may use the routes.
func TestFlowRoutes(t *testing.T) {
	s := New(&fakeBackend{}, Config{MaxJSONBytes: 64}, nil)
	for _, c := range []struct {
		method, path, token, ctype, body string
		status                           int
	}{
		{"POST", "/v1/flows", "sub", "application/yaml", "id: f", 201},
		{"POST", "/v1/flows?dry_run=true", "sub", "application/yaml; charset=utf-8", "id: f", 200},
		{"POST", "/v1/flows", "sub", "application/json", "{}", 200},
		{"POST", "/v1/flows", "sub", "application/toml", "id = 'f'", 200},
		{"POST", "/v1/flows", "sub", "text/plain", "id: f", 415},
		{"POST", "/v1/flows?dry_run=maybe", "sub", "application/yaml", "id: f", 400},
		{"POST", "/v1/flows", "sub", "application/yaml", "bad", 400},
		{"POST", "/v1/flows", "sub", "application/yaml", string(make([]byte, 100)), 413},
		{"POST", "/v1/flows", "", "application/yaml", "id: f", 401},
		{"GET", "/v1/flows", "sub", "", "", 200},
		{"GET", "/v1/flows/f", "sub", "", "", 200},
		{"GET", "/v1/flows/g", "sub", "", "", 404},
		{"DELETE", "/v1/flows/f", "sub", "", "", 204},
		{"DELETE", "/v1/flows/g", "op", "", "", 404},
	} {
		code, e := do(t, s, c.method, c.path, c.token, c.ctype, c.body)
		if code != c.status {
			t.Errorf("%s %s (%s) = %d (%s), want %d", c.method, c.path, c.ctype, code, e.Message, c.status)
		}
		if c.body == "bad" && (len(e.Problems) != 1 || e.Problems[0] != "id: required") {
			t.Errorf("the bad flow's problems = %q", e.Problems)
		}
	}
}
