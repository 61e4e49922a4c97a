package server

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

var _ PlanBackend = (*fakeBackend)(nil)

func (f *fakeBackend) Plan(ctx context.Context, name string, message json.RawMessage) (api.Run, error) {
	return api.Run{Service: name, Plan: true, Outcome: "ok"}, f.fireErr
}

func (f *fakeBackend) RunByID(ctx context.Context, p Principal, id string) (api.Run, error) {
	return api.Run{ID: id}, nil
}

// TestFirePlan: "plan": true goes to Plan, not Fire.
func TestFirePlan(t *testing.T) {
	f := &fakeBackend{}
	s := New(f, Config{}, nil)
	code, _ := do(t, s, "POST", "/v1/services/x/fire", "op", "application/json", `{"plan": true}`)
	if code != 200 || f.fired != nil {
		t.Fatalf("plan = %d, fired %s; want 200 and nothing fired", code, f.fired)
	}
}

var _ StateBackend = (*fakeBackend)(nil)

func (f *fakeBackend) State(ctx context.Context, p Principal, name string) (api.State, error) {
	return api.State{Service: name}, nil
}
