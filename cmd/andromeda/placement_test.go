package main

import (
	"bytes"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

func TestPrintPlacement(t *testing.T) {
	for _, tc := range []struct {
		p    *api.Placement
		want string
	}{
		{nil, ""},
		{&api.Placement{Kind: "new", Containers: []string{"andromeda-a-1", "andromeda-a-2"}, Image: "sha256:abc", Reason: "containers of its own"},
			"Placement:\tnew in andromeda-a-1, andromeda-a-2, image sha256:abc: containers of its own\n"},
		{&api.Placement{Kind: "fallback", Reason: "group1-node is not running"},
			"Placement:\tfallback in no container: group1-node is not running\n"},
	} {
		var b bytes.Buffer
		printPlacement(&b, tc.p)
		if b.String() != tc.want {
			t.Errorf("printPlacement(%+v) = %q, want %q", tc.p, b.String(), tc.want)
		}
	}
}

// TestInspectShowsPlacement: inspect's table has the placement line after
// the decision.
func TestInspectShowsPlacement(t *testing.T) {
	var b bytes.Buffer
	printService(&b, api.Service{Name: "s", Version: "1", Decision: api.Decision{Verdict: "run", Driver: "docker"},
		Placement: &api.Placement{Kind: "existing", Containers: []string{"group1-node"}, Reason: "placed by the policy's containers"}})
	out := b.String()
	i, j := bytes.Index([]byte(out), []byte("Decision:")), bytes.Index([]byte(out), []byte("Placement:"))
	if i < 0 || j < i || !bytes.Contains([]byte(out), []byte("existing in group1-node: placed by the policy's containers")) {
		t.Errorf("inspect output:\n%s", out)
	}
}
