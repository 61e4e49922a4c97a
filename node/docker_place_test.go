package node_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
)

// TestDockerContainerFallback: a docker service the policy places into a
// listed container that is not running (here: not there at all) deploys
// in new containers of its own under container_fallback new, with inspect
// saying so and why, and is refused at deploy under refuse, with the
// reason and nothing left behind.
func TestDockerContainerFallback(t *testing.T) {
	cli := dockerimg.Client(t)
	ctx := context.Background()
	img := execGuestImage(t, cli)
	const missing = "andromeda-test-no-such-container"
	for _, tc := range []struct {
		fallback string
		ok       bool
	}{{policy.FallbackNew, true}, {policy.FallbackRefuse, false}} {
		t.Run(tc.fallback, func(t *testing.T) {
			n, logs := startLoggedNode(t, func(c *node.Config) {
				c.Policy.Containers = []policy.Container{{Name: missing}}
				c.Policy.ContainerFallback = tc.fallback
			})
			t.Cleanup(func() { removeNodeContainers(cli, n.NodeID()) })
			if d := offerDriver(t, n, "docker"); !d.Enabled {
				t.Fatalf("docker driver disabled: %s\n%s", d.Reason, logs)
			}
			before := snapshotData(t, n)
			res, err := n.op.Submit(ctx, pack(t, imageServiceDir(t, "placed", img.ID)))
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), missing) {
					t.Fatalf("submit = %v, want a refusal naming the container %s", err, missing)
				}
				t.Logf("refused: %v", err)
				if after := snapshotData(t, n); after != before {
					t.Errorf("the refusal changed the data dir or the services:\nbefore %s\nafter  %s", before, after)
				}
				if left := nodeContainers(t, cli, n.NodeID()); len(left) != 0 {
					t.Errorf("containers left by the refused deploy: %v", left)
				}
				return
			}
			if err != nil {
				t.Fatalf("submit: %v", err)
			}
			d := res.Service.Decision
			if d.Container != missing || d.Fallback != policy.FallbackNew {
				t.Errorf("decision container %q, fallback %q", d.Container, d.Fallback)
			}
			if r, err := n.op.Fire(ctx, "placed", json.RawMessage(`{}`)); err != nil || r.Outcome == "error" || r.Outcome == "crashed" {
				t.Fatalf("fire: %+v, %v", r, err)
			}
			svc, err := n.op.Service(ctx, "placed")
			if err != nil {
				t.Fatal(err)
			}
			p := svc.Placement
			if p == nil || p.Kind != "fallback" || len(p.Containers) == 0 || !strings.Contains(p.Reason, missing) {
				t.Fatalf("placement = %+v, want fallback into new containers naming %s", p, missing)
			}
			t.Logf("placement: %+v", *p)
		})
	}
}
