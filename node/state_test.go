package node_test

import (
	"context"
	"slices"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

// TestStateAPI: the state a service's runs wrote is readable through the
// API, by the operator or the service's owner, with the runs that wrote
// it; another submitter sees no such service.
func TestStateAPI(t *testing.T) {
	n := startNodeWith(t, realWasm(t))
	ctx := context.Background()
	if _, err := n.op.Submit(ctx, pack(t, mirrorService(t))); err != nil {
		t.Fatal(err)
	}
	empty, err := n.op.State(ctx, "mirror")
	if err != nil || empty.Revision != 0 || len(empty.Values) != 0 || empty.Writers == nil {
		t.Fatalf("state before any write = %+v, %v", empty, err)
	}
	r := mirror(t, n, `{"state": {"set": {"n": 7, "who": "ada"}}, "noop": "wrote"}`)
	st, err := n.op.State(ctx, "mirror")
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision == 0 || string(st.Values["n"]) != "7" || string(st.Values["who"]) != `"ada"` || !slices.Contains(st.Writers, r.ID) {
		t.Fatalf("state = %+v; want n 7, who ada, written by %s", st, r.ID)
	}
	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(n.Addr(), tok.Secret).State(ctx, "mirror"); status(err) != 404 {
		t.Fatalf("another submitter reading the operator's state: %v; want 404", err)
	}
	if _, err := n.op.State(ctx, "nosuch"); status(err) != 404 {
		t.Fatalf("state of an unknown service: %v; want 404", err)
	}
}
