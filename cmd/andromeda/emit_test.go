package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

// TestEmitCLI: andromeda emit publishes and prints the event's sequence,
// as text or JSON; a message that is not JSON is a usage error, and the
// node's refusals come back with their words.
func TestEmitCLI(t *testing.T) {
	_, env := startNode(t, nil)
	out, stderr, err := runCLI(t, env, "emit", "orders.created", `{"id": 42}`)
	if err != nil || !strings.Contains(out, "published on orders.created as event 1") {
		t.Fatalf("emit: %v\n%s%s", err, out, stderr)
	}
	out, _, err = runCLI(t, env, "emit", "orders.created", `2`, "--json")
	var p api.Published
	if err != nil || json.Unmarshal([]byte(out), &p) != nil || p.Sequence != 2 || p.Topic != "orders.created" {
		t.Fatalf("emit --json: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, env, "emit", "orders", "{"); err == nil || !strings.Contains(err.Error(), "valid JSON") {
		t.Fatalf("emit of bad JSON: %v, want a usage error", err)
	}
	if _, _, err := runCLI(t, env, "emit", "Orders", "1"); err == nil || !strings.Contains(err.Error(), "[a-z0-9_-]") {
		t.Fatalf("emit on a bad topic: %v, want the topic rule", err)
	}
}
