package server

import (
	"context"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

var _ ConfigBackend = (*fakeBackend)(nil)

func (f *fakeBackend) ServiceConfig(ctx context.Context, p Principal, name string, revision int) (api.ServiceConfig, error) {
	return api.ServiceConfig{Service: name, Revision: max(revision, 1), Current: revision == 0}, nil
}

func (f *fakeBackend) SetConfig(ctx context.Context, p Principal, name string, patch []byte, o api.SubmitOptions) (api.ServiceConfig, error) {
	return api.ServiceConfig{Service: name, Revision: 2, Current: true}, nil
}

func (f *fakeBackend) ConfigHistory(ctx context.Context, p Principal, name string) ([]api.ConfigRevision, error) {
	return nil, nil
}

// TestConfigRoutes: a bad revision and a body that is not a merge patch
// are refused before the backend is asked.
func TestConfigRoutes(t *testing.T) {
	s := New(&fakeBackend{}, Config{}, nil)
	for _, tc := range []struct {
		method, path, ctype, body string
		status                    int
	}{
		{"GET", "/v1/services/x/config", "", "", 200},
		{"GET", "/v1/services/x/config?revision=0", "", "", 400},
		{"GET", "/v1/services/x/config?revision=two", "", "", 400},
		{"PATCH", "/v1/services/x/config", "text/plain", "a=1", 415},
		{"PATCH", "/v1/services/x/config", api.MergePatchType, `{"a": 1}`, 200},
		{"GET", "/v1/services/x/config/history", "", "", 200},
	} {
		code, e := do(t, s, tc.method, tc.path, "sub", tc.ctype, tc.body)
		if code != tc.status {
			t.Errorf("%s %s (%s) = %d %s, want %d", tc.method, tc.path, tc.ctype, code, e.Message, tc.status)
		}
	}
}
