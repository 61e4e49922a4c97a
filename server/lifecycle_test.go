package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// The fake backend's lifecycle steps record what they were asked; the
// real steps are exercised end to end in package node and the CLI.
func (f *fakeBackend) DeployService(ctx context.Context, p Principal, name string) (api.DeployResult, error) {
	return api.DeployResult{StartMode: api.StartEmpty, Volumes: []api.Volume{}}, nil
}
func (f *fakeBackend) StartService(ctx context.Context, p Principal, name string) (api.Service, error) {
	return api.Service{Name: name, Phase: api.PhaseStarted}, nil
}
func (f *fakeBackend) StopService(ctx context.Context, p Principal, name string, grace time.Duration) (api.Service, error) {
	f.grace = grace
	return api.Service{Name: name, Phase: api.PhaseStopped}, nil
}
func (f *fakeBackend) RemoveService(ctx context.Context, name string, purge bool) error {
	f.purge = purge
	return nil
}

// TestLifecycleRequests checks how the lifecycle routes read their
// parameters and whom they let in.
func TestLifecycleRequests(t *testing.T) {
	fb := &fakeBackend{}
	s := New(fb, Config{}, nil)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		grace                           time.Duration
		purge                           bool
	}{
		{"stop default grace", "POST", "/v1/services/x/stop", "sub", "", 200, 0, false},
		{"stop grace in body", "POST", "/v1/services/x/stop", "op", `{"grace":"2s"}`, 200, 2 * time.Second, false},
		{"stop grace in query wins", "POST", "/v1/services/x/stop?grace=300ms", "op", `{"grace":"2s"}`, 200, 300 * time.Millisecond, false},
		{"stop bad grace", "POST", "/v1/services/x/stop?grace=soon", "op", "", 400, 0, false},
		{"stop negative grace", "POST", "/v1/services/x/stop", "op", `{"grace":"-1s"}`, 400, 0, false},
		{"stop unknown field", "POST", "/v1/services/x/stop", "op", `{"grce":"1s"}`, 400, 0, false},
		{"start by a submitter", "POST", "/v1/services/x/start", "sub", "", 200, 0, false},
		{"deploy", "POST", "/v1/services/x/deploy", "op", "{}", 200, 0, false},
		{"rm keeps runs", "DELETE", "/v1/services/x", "op", "", 204, 0, false},
		{"rm purge", "DELETE", "/v1/services/x?purge=true", "op", "", 204, 0, true},
		{"rm bad purge", "DELETE", "/v1/services/x?purge=maybe", "op", "", 400, 0, false},
		{"rm by a submitter", "DELETE", "/v1/services/x", "sub", "", 403, 0, false},
		{"stop without a token", "POST", "/v1/services/x/stop", "", "", 401, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb.grace, fb.purge = -1, false
			code, e := do(t, s, tc.method, tc.path, tc.token, "application/json", tc.body)
			if code != tc.status {
				t.Fatalf("status = %d (%s), want %d", code, e.Message, tc.status)
			}
			if code/100 != 2 {
				return
			}
			if strings.Contains(tc.path, "/stop") && fb.grace != tc.grace {
				t.Errorf("grace = %s, want %s", fb.grace, tc.grace)
			}
			if fb.purge != tc.purge {
				t.Errorf("purge = %v, want %v", fb.purge, tc.purge)
			}
		})
	}
}

// TestSubmitNoStart checks that ?start=false reaches the backend as
// SubmitOptions.NoStart and that a bad value is refused.
func TestSubmitNoStart(t *testing.T) {
	for _, tc := range []struct {
		query string
		ok    bool
		want  bool
	}{{"", true, false}, {"?start=false", true, true}, {"?start=true", true, false}, {"?start=nope", false, false}} {
		r, _ := http.NewRequest("POST", "/v1/services"+tc.query, nil)
		o, err := submitOptions(r)
		if (err == nil) != tc.ok || o.NoStart != tc.want {
			t.Errorf("%q: NoStart %v, err %v", tc.query, o.NoStart, err)
		}
	}
}
