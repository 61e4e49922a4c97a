package server

import (
	"context"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/store"
)

var (
	_ FlowBackend = (*fakeBackend)(nil)
	_ FlowRunner  = (*fakeBackend)(nil)
)

func (f *fakeBackend) StartFlow(ctx context.Context, p Principal, id string) (api.Flow, error) {
	if id != "f" {
		return api.Flow{}, store.ErrNotFound
	}
	return api.Flow{ID: "f", Running: true}, nil
}

func (f *fakeBackend) StopFlow(ctx context.Context, p Principal, id string) (api.Flow, error) {
	if id != "f" {
		return api.Flow{}, store.ErrNotFound
	}
	return api.Flow{ID: "f"}, nil
}

// FireFlow ends the flow run at once when the caller waits 1s or more,
// else leaves it queued.
func (f *fakeBackend) FireFlow(ctx context.Context, p Principal, id string, message []byte, module string, wait time.Duration) (api.FlowRun, error) {
	if id != "f" {
		return api.FlowRun{}, store.ErrNotFound
	}
	if wait >= time.Second {
		return api.FlowRun{ID: "r", Flow: "f", Outcome: "ok"}, nil
	}
	return api.FlowRun{ID: "r", Flow: "f", Outcome: "queued"}, nil
}

func (f *fakeBackend) SetBreakpoint(ctx context.Context, p Principal, id, module string, on bool) (api.Flow, error) {
	if id != "f" || module != "m" {
		return api.Flow{}, store.ErrNotFound
	}
	return api.Flow{ID: "f"}, nil
}

func (f *fakeBackend) StepFlow(ctx context.Context, p Principal, id string) (api.FlowStepResult, error) {
	if id != "f" {
		return nil, store.ErrNotFound
	}
	return api.FlowStepResult{}, nil
}

func (f *fakeBackend) RerunFlow(ctx context.Context, p Principal, id, run, from string, wait time.Duration) (api.FlowRun, error) {
	if id != "f" || run != "r" {
		return api.FlowRun{}, store.ErrNotFound
	}
	return api.FlowRun{ID: "r2", Flow: "f", Outcome: "queued", RerunOf: "r"}, nil
}

func (f *fakeBackend) FlowRuns(ctx context.Context, p Principal, id string, limit int, dead bool) ([]api.FlowRun, error) {
	if id != "f" {
		return nil, store.ErrNotFound
	}
	rs := make([]api.FlowRun, limit)
	for i := range rs {
		rs[i].DeadLetter = dead
	}
	return rs, nil
}

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
// backend's problems come back one a line; any token may use the routes;
// start, stop, fire (202 queued, 200 ended, a bad wait or field 400) and
// runs (limit 1 to 1000); breakpoints and steps are the operator's.
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
		{"POST", "/v1/flows/f/start", "sub", "", "", 200},
		{"POST", "/v1/flows/g/start", "sub", "", "", 404},
		{"POST", "/v1/flows/f/stop", "sub", "", "", 200},
		{"POST", "/v1/flows/f/fire", "sub", "application/json", `{"message":{"n":1}}`, 202},
		{"POST", "/v1/flows/f/fire", "sub", "application/json", `{"wait":"2s"}`, 200},
		{"POST", "/v1/flows/f/fire", "sub", "application/json", `{"wait":"6m"}`, 400},
		{"POST", "/v1/flows/f/fire", "sub", "application/json", `{"wait":"-1s"}`, 400},
		{"POST", "/v1/flows/f/fire", "sub", "application/json", `{"mesage":1}`, 400},
		{"POST", "/v1/flows/g/fire", "sub", "application/json", `{}`, 404},
		{"POST", "/v1/flows/f/fire", "", "application/json", `{}`, 401},
		{"GET", "/v1/flows/f/runs", "sub", "", "", 200},
		{"GET", "/v1/flows/f/runs?limit=1000", "sub", "", "", 200},
		{"GET", "/v1/flows/f/runs?limit=0", "sub", "", "", 400},
		{"GET", "/v1/flows/f/runs?limit=x", "sub", "", "", 400},
		{"GET", "/v1/flows/f/runs?dead_letter=true&limit=3", "sub", "", "", 200},
		{"GET", "/v1/flows/f/runs?dead_letter=false", "sub", "", "", 200},
		{"GET", "/v1/flows/f/runs?dead_letter=yes", "sub", "", "", 400},
		{"GET", "/v1/flows/g/runs", "sub", "", "", 404},
		{"PUT", "/v1/flows/f/breakpoints/m", "op", "", "", 200},
		{"PUT", "/v1/flows/f/breakpoints/m", "sub", "", "", 403},
		{"DELETE", "/v1/flows/f/breakpoints/m", "op", "", "", 200},
		{"DELETE", "/v1/flows/f/breakpoints/x", "op", "", "", 404},
		{"POST", "/v1/flows/f/step", "op", "", "", 200},
		{"POST", "/v1/flows/f/step", "sub", "", "", 403},
		{"POST", "/v1/flows/g/step", "op", "", "", 404},
		{"POST", "/v1/flows/f/runs/r/rerun", "op", "application/json", `{"from":"m"}`, 202},
		{"POST", "/v1/flows/f/runs/r/rerun", "sub", "application/json", `{}`, 403},
		{"POST", "/v1/flows/f/runs/x/rerun", "op", "application/json", `{}`, 404},
		{"POST", "/v1/flows/f/runs/r/rerun", "op", "application/json", `{"wait":"1h"}`, 400},
		{"POST", "/v1/flows/f/runs/r/rerun", "op", "application/json", `{"form":"m"}`, 400},
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
