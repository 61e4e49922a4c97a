package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/store"
)

func (f *fakeBackend) Offer(ctx context.Context) (api.Offer, error) {
	return api.Offer{Node: "fake", Properties: map[string]any{"andromeda.node.name": "fake"}}, nil
}

func (f *fakeBackend) Runtimes(ctx context.Context) ([]api.Runtime, error) {
	return []api.Runtime{{ID: "wasm", Name: "WebAssembly", Driver: "wasm", Language: "wasm", Kind: api.RuntimeDriver, Enabled: true}}, nil
}

func (f *fakeBackend) SelfTest(ctx context.Context, names ...string) (api.SelfTest, error) {
	return api.SelfTest{Drivers: []api.SelfTestResult{{Name: "wasm", OK: true, Enabled: true}}}, nil
}

func (f *fakeBackend) TestService(ctx context.Context, name string) (api.ServiceTest, error) {
	if name != "svc" {
		return api.ServiceTest{}, store.ErrNotFound
	}
	return api.ServiceTest{Service: name, Ran: true, OK: true}, nil
}

// TestOfferRoutes: the offer and the runtimes are any token's; selftest and a service's test
// are the operator's.
func TestOfferRoutes(t *testing.T) {
	s := New(&fakeBackend{}, Config{}, nil)
	for _, c := range []struct {
		method, path, token string
		status              int
	}{
		{"GET", "/v1/offer", "sub", 200},
		{"GET", "/v1/offer", "", 401},
		{"GET", "/v1/runtimes", "sub", 200},
		{"GET", "/v1/runtimes", "", 401},
		{"POST", "/v1/selftest", "op", 200},
		{"POST", "/v1/selftest", "sub", 403},
		{"POST", "/v1/services/svc/test", "op", 200},
		{"POST", "/v1/services/svc/test", "sub", 403},
		{"POST", "/v1/services/nope/test", "op", 404},
	} {
		code, e := do(t, s, c.method, c.path, c.token, "application/json", "")
		if code != c.status {
			t.Errorf("%s %s as %q = %d (%s), want %d", c.method, c.path, c.token, code, e.Message, c.status)
		}
	}
}

func (f *fakeBackend) Nodes(ctx context.Context) ([]api.ClusterNode, error) {
	return []api.ClusterNode{{Name: "fake", Health: api.NodeUp, Self: true}}, nil
}

func (f *fakeBackend) Drain(ctx context.Context) (api.ClusterNode, error) {
	return api.ClusterNode{}, fmt.Errorf("%w: this node is not in a cluster", ErrConflict)
}

func (f *fakeBackend) Forwards(ctx context.Context, limit int) ([]api.Forward, error) {
	return []api.Forward{}, nil
}

func (f *fakeBackend) ClusterStatus(ctx context.Context) (api.ClusterStatus, error) {
	return api.ClusterStatus{Nodes: []api.ClusterNode{}, Streams: []api.StreamState{}}, nil
}
