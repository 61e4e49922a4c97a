package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// placedGreeter is the greeter example named name, with placement (a YAML
// flow mapping, "" for none) and keywords.
func placedGreeter(t *testing.T, name, placement, keywords string) []byte {
	t.Helper()
	dir := example(t, "greeter")
	m, err := os.ReadFile(filepath.Join(dir, "andromeda.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m = bytes.Replace(m, []byte("name: greeter"), []byte("name: "+name), 1)
	m = bytes.Replace(m, []byte("keywords: [demo]"), []byte("keywords: ["+keywords+"]"), 1)
	if placement != "" {
		m = append(m, []byte("placement: "+placement+"\n")...)
	}
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	return pack(t, dir)
}

// TestClusterPlacement: a submission is placed by the nodes' offers and
// admitted by the policy of the node that runs it.
//   - labels: a service asking for labels only n3 has, submitted to n1,
//     runs on n3 (and a fire through n1 runs it there); one asking for a
//     label no node has is refused at once, naming each node and why.
//   - the chosen node's policy decides: n2 accepts only services with the
//     keyword gpu, so a service placed on n2 first is refused there and
//     admitted by the next node, whose decision notes n2's refusal.
//   - spread: six services submitted to n1 with spread are placed two on
//     each node; without placement a submission stays where it was made.
//   - a node at its services bound is passed over.
func TestClusterPlacement(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t, 3, func(i int, cfg *node.Config) {
		cfg.Cluster.Labels = []map[string]string{{"zone": "a"}, {"zone": "b"}, {"zone": "b", "disk": "ssd"}}[i]
		if i == 1 {
			cfg.Policy.Keywords = []string{"gpu"}
		}
	})
	n1 := nodes[0].op
	waitHealth(t, nodes[0], "n3", api.NodeUp, 10*time.Second)

	// Labels.
	res, err := n1.Submit(ctx, placedGreeter(t, "ssd", "{labels: {disk: ssd}}", "demo"))
	if err != nil || res.Service.Node != "n3" {
		t.Fatalf("a service asking for disk=ssd, submitted to n1: %+v, %v; want placed on n3", res.Service, err)
	}
	if run, err := n1.Fire(ctx, "ssd", nil); err != nil || run.Node != "n3" {
		t.Errorf("fire through n1 = %+v, %v; want a run on n3", run, err)
	}
	_, err = n1.Submit(ctx, placedGreeter(t, "nowhere", "{labels: {zone: c}}", "demo"))
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 422 || !strings.Contains(err.Error(), "n1: labels {zone=a} lack {zone=c}") || !strings.Contains(err.Error(), "n3: labels {disk=ssd, zone=b} lack {zone=c}") {
		t.Errorf("a service asking for zone=c = %v, want 422 naming each node's labels", err)
	}
	for _, n := range nodes {
		if _, err := n.op.Service(ctx, "nowhere"); err == nil {
			t.Errorf("%s registered the service no node may run", n.cfg.Name)
		}
	}

	// Refused by the chosen node's policy: zone=b is n2 and n3; n2 holds
	// fewer, comes first, refuses (no keyword gpu); n3 admits it.
	res, err = n1.Submit(ctx, placedGreeter(t, "zoned", "{labels: {zone: b}}", "demo"))
	if err != nil || res.Service.Node != "n3" {
		t.Fatalf("zone=b submitted to n1: %+v, %v; want refused by n2 and placed on n3", res.Service, err)
	}
	if !strings.Contains(fmt.Sprint(res.Service.Decision.Reasons), "n2 did not admit it") {
		t.Errorf("n3's decision = %+v, want a note of n2's refusal", res.Service.Decision.Reasons)
	}
	res, err = n1.Submit(ctx, placedGreeter(t, "gpu-job", "{labels: {zone: b}}", "gpu"))
	if err != nil || res.Service.Node != "n2" {
		t.Errorf("zone=b with keyword gpu: %+v, %v; want placed on n2", res.Service, err)
	}

	// Without placement: where it was submitted.
	if res, err := nodes[1].op.Submit(ctx, placedGreeter(t, "plain", "", "gpu")); err != nil || res.Service.Node != "n2" {
		t.Errorf("no placement, submitted to n2: %+v, %v; want n2", res.Service, err)
	}

	// Spread: n1 holds none so far, n2 and n3 two each; six more with
	// spread (carrying gpu, which every node accepts) go to the nodes
	// holding fewest: 4, 3 and 3 in some order.
	for i := range 6 {
		if _, err := n1.Submit(ctx, placedGreeter(t, fmt.Sprintf("spread-%d", i), "{spread: true}", "gpu")); err != nil {
			t.Fatalf("spread-%d: %v", i, err)
		}
	}
	held := map[string]int{}
	svcs, err := n1.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		held[s.Node]++
	}
	if low, high := min(held["n1"], held["n2"], held["n3"]), max(held["n1"], held["n2"], held["n3"]); low != 3 || high != 4 || len(svcs) != 10 {
		t.Errorf("services by node after spreading six: %v, want 3 or 4 each, 10 in all", held)
	}
}

// TestClusterTakeOverPolicy: a node takes over only what its own policy
// admits. n3 accepts only services with the keyword gpu; four services
// without it, submitted to n1, all go to n2 when n1 is lost (n3, in turn
// first for some of them, refuses each and leaves it to n2), and none ever
// runs on n3.
func TestClusterTakeOverPolicy(t *testing.T) {
	ctx := context.Background()
	nodes := startCluster(t, 3, func(i int, cfg *node.Config) {
		if i == 2 {
			cfg.Policy.Keywords = []string{"gpu"}
		}
	})
	names := []string{"svc-a", "svc-b", "svc-c", "svc-d"}
	for _, name := range names {
		if res, err := nodes[0].op.Submit(ctx, placedGreeter(t, name, "", "demo")); err != nil || res.Service.Node != "n1" {
			t.Fatalf("submit %s to n1: %+v, %v", name, res.Service, err)
		}
	}
	resume := node.PauseHeartbeat(nodes[0].Node)
	defer resume()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		on := map[string]int{}
		for _, name := range names {
			if svc, err := nodes[1].op.Service(ctx, name); err == nil {
				on[svc.Node]++
			}
		}
		if on["n3"] > 0 {
			t.Fatalf("services taken over by n3, whose policy refuses them: %v", on)
		}
		if on["n2"] == len(names) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after n1 was lost the services are on %v, want all on n2", on)
		}
	}
	// Placed is not yet deployed: n2 deploys what it claimed a moment later.
	for _, name := range names {
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			run, err := nodes[1].op.Fire(ctx, name, nil)
			if err == nil && run.Node == "n2" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("fire %s: %+v, %v; want a run on n2", name, run.Node, err)
				break
			}
		}
	}
}
