package server

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/store"
)

// The fake backend serves keys too, so the OpenAPI tests see the routes.
var _ KeyBackend = (*fakeBackend)(nil)

func (f *fakeBackend) CreateKey(ctx context.Context, target string) (api.Key, error) {
	if target == "taken" {
		return api.Key{}, Errorf(ErrConflict, "key taken: exists")
	}
	return api.Key{Target: target, KeyID: "0123456789abcdef"}, nil
}

func (f *fakeBackend) Keys(ctx context.Context) ([]api.Key, error) {
	return []api.Key{{Target: "a"}}, nil
}

func (f *fakeBackend) Key(ctx context.Context, target string) (api.Key, error) {
	return api.Key{}, store.ErrNotFound
}

func (f *fakeBackend) RemoveKey(ctx context.Context, target string) error { return nil }

// TestKeyRoutes: the key API is the operator's alone, and answers with the
// kinds its backend names.
func TestKeyRoutes(t *testing.T) {
	s := New(&fakeBackend{}, Config{}, nil)
	for _, tc := range []struct {
		method, path, token string
		status              int
		body                string
	}{
		{"POST", "/v1/keys/vault", "op", 201, `"key_id": "0123456789abcdef"`},
		{"POST", "/v1/keys/taken", "op", 409, "exists"},
		{"POST", "/v1/keys/vault", "sub", 403, "operator role"},
		{"GET", "/v1/keys", "op", 200, `"target": "a"`},
		{"GET", "/v1/keys", "sub", 403, "operator role"},
		{"GET", "/v1/keys/vault", "op", 404, "not found"},
		{"DELETE", "/v1/keys/vault", "op", 204, ""},
		{"DELETE", "/v1/keys/vault", "", 401, "bearer"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("%s %s as %q = %d %s, want %d with %q", tc.method, tc.path, tc.token, w.Code, w.Body, tc.status, tc.body)
		}
	}
}
