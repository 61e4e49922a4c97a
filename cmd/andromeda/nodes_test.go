package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/node"
)

// TestNodesCLI: andromeda nodes lists a node alone as itself, up, with its
// API address, drivers and labels; --json gives the registry's entries.
func TestNodesCLI(t *testing.T) {
	n, env := startNode(t, func(c *node.Config) {
		c.Name = "solo"
		c.Cluster.Labels = map[string]string{"zone": "a"}
		c.Cluster.Heartbeat, _ = manifest.ParseDuration("200ms")
		c.Cluster.LostAfter, _ = manifest.ParseDuration("1s")
	})
	// The drivers are listed once their self-tests at start have passed,
	// from the next heartbeat on.
	want := regexp.MustCompile(`(?m)^NAME\s+HEALTH\s+HEARTBEAT\s+API\s+SERVICES\s+DRIVERS\s+LABELS\n` +
		`solo \(this\)\s+up\s+\S+ ago\s+` + regexp.QuoteMeta(n.Addr()) + `\s+\d+\s+\S*wasm\S*\s+zone=a$`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _, err := runCLI(t, env, "nodes")
		if err != nil {
			t.Fatal(err)
		}
		if want.MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes =\n%s\nwant to match %s", out, want)
		}
	}
	out, _, err := runCLI(t, env, "nodes", "--json")
	var ns []api.ClusterNode
	if err != nil || json.Unmarshal([]byte(out), &ns) != nil || len(ns) != 1 || ns[0].Name != "solo" || ns[0].Health != api.NodeUp || !ns[0].Self || ns[0].Labels["zone"] != "a" {
		t.Errorf("nodes --json = %v\n%s", err, out)
	}
	// A node alone has nowhere to drain to: refused, naming why.
	if _, _, err := runCLI(t, env, "drain"); err == nil || !strings.Contains(err.Error(), "not in a cluster") {
		t.Errorf("drain on a node alone = %v, want refused: not in a cluster", err)
	}
	// Nothing forwarded yet: said in words, and an empty list in JSON.
	if out, _, err := runCLI(t, env, "forwards"); err != nil || !strings.Contains(out, "no service forwarded") {
		t.Errorf("forwards = %q, %v", out, err)
	}
	if out, _, err := runCLI(t, env, "forwards", "--json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("forwards --json = %q, %v", out, err)
	}
	// Cluster status of a node alone: its streams, one replica each, led by itself.
	out, _, err = runCLI(t, env, "cluster", "status")
	if err != nil || !strings.Contains(out, "a node alone") || !regexp.MustCompile(`(?m)^KV_andromeda_services\s+1\s+solo\s+-\s+\d+$`).MatchString(out) {
		t.Errorf("cluster status = %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "cluster", "status", "--json")
	var st api.ClusterStatus
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || len(st.Nodes) != 1 || len(st.Streams) < 10 {
		t.Errorf("cluster status --json = %v\n%s", err, out)
	}
}
