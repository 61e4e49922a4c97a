package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/store"
)

// The fake backend knows no runs in flight: enough to route (the node's
// tests run the real thing).
func (f *fakeBackend) FireRun(ctx context.Context, name string, message json.RawMessage, args []string) (api.Run, error) {
	return api.Run{}, fmt.Errorf("service %s: %w", name, store.ErrNotFound)
}

func (f *fakeBackend) FireDetached(ctx context.Context, name string, message json.RawMessage, args []string) (api.RunInFlight, *api.Run, error) {
	return api.RunInFlight{}, nil, fmt.Errorf("service %s: %w", name, store.ErrNotFound)
}

func (f *fakeBackend) Running(ctx context.Context, p Principal, service string) ([]api.RunInFlight, error) {
	return nil, nil
}

func (f *fakeBackend) WaitRun(ctx context.Context, p Principal, id string, timeout time.Duration) (api.Run, api.RunInFlight, bool, error) {
	return api.Run{}, api.RunInFlight{}, false, fmt.Errorf("run %s: %w", id, store.ErrNotFound)
}

func (f *fakeBackend) Cancel(ctx context.Context, p Principal, id string) (api.CancelResult, error) {
	return api.CancelResult{}, fmt.Errorf("run %s: %w", id, store.ErrNotFound)
}

// TestRunRequests: the run API's own rules, checked before the backend
// is asked.
func TestRunRequests(t *testing.T) {
	s := New(&fakeBackend{}, Config{}, nil)
	for _, tc := range []struct {
		method, path, body string
		status             int
		detail             string
	}{
		{"GET", "/v1/runs?status=done", "", 400, "status: must be running"},
		{"GET", "/v1/runs?status=running&limit=3", "", 400, "limit: not with status=running"},
		{"GET", "/v1/runs?status=running", "", 200, ""},
		{"GET", "/v1/runs/x/wait?timeout=2h", "", 400, "timeout: must be a duration from 0s to 1m"},
		{"GET", "/v1/runs/x/wait", "", 404, "run x"},
		{"POST", "/v1/runs/x/cancel", "", 404, "run x"},
		{"POST", "/v1/runs/x/cancel", `{"force":true}`, 400, "unknown field"},
		{"POST", "/v1/services/x/fire", `{"plan":true,"detach":true}`, 400, "detach: a planned fire records no run"},
		{"POST", "/v1/services/x/fire", `{"plan":true,"args":["a"]}`, 400, "args: a planned fire takes its message only"},
		{"POST", "/v1/services/x/fire", `{"args":"a"}`, 400, "args"},
	} {
		status, e := do(t, s, tc.method, tc.path, "op", "application/json", tc.body)
		if status != tc.status || tc.detail != "" && !strings.Contains(e.Message, tc.detail) {
			t.Errorf("%s %s %s = %d %q, want %d with %q", tc.method, tc.path, tc.body, status, e.Message, tc.status, tc.detail)
		}
	}
}
