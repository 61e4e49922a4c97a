package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// TestWhyCLI: andromeda why prints a service's evaluations newest first
// and a summary line per trigger, the cron one with its next due tick;
// --json is the API's answer; a bad --since is a usage error.
func TestWhyCLI(t *testing.T) {
	ctx := context.Background()
	n, env := startNode(t, nil)
	dir := echoService(t)
	m := filepath.Join(dir, "andromeda.yaml")
	b, err := os.ReadFile(m)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "  - {kind: manual}\n", "  - {kind: cron, every: 1s}\n  - {kind: manual}\n", 1))
	if err := os.WriteFile(m, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runCLI(t, env, "submit", dir); err != nil {
		t.Fatalf("submit: %v\n%s", err, stderr)
	}
	tok, err := node.OperatorToken(env["ANDROMEDA_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(n.Addr(), tok)
	fired, err := c.Fire(ctx, "echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		runs, err := c.Runs(ctx, "echo", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs after 20s, want the fired one and 2 ticks", len(runs))
		}
		time.Sleep(100 * time.Millisecond) // ticks come once a second
	}

	out, _, err := runCLI(t, env, "why", "echo")
	if err != nil {
		t.Fatalf("why: %v\n%s", err, out)
	}
	t.Log(out)
	for _, want := range []string{
		"echo: trigger evaluations from ",
		"TIME", "TRIGGER", "WHAT", "RUN", "REASON",
		fired.ID,
		"triggers[0] cron every 1s: ", " ran", "next due ",
		"triggers[1] manual: 1 evaluation, 1 ran",
		"note: deduplicated",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("why printed no %q:\n%s", want, out)
		}
	}
	lines := strings.Split(out, "\n")
	var rows []string
	for _, l := range lines {
		if len(l) > 19 && l[0] == '2' && strings.Contains(l, "triggers[") { // "2026-…  triggers[i]  …"
			rows = append(rows, l)
		}
	}
	if len(rows) < 3 {
		t.Errorf("why printed %d evaluation rows, want 3 or more:\n%s", len(rows), out)
	}
	for i := 1; i < len(rows); i++ {
		if rows[i][:19] > rows[i-1][:19] {
			t.Errorf("rows not newest first:\n%s\n%s", rows[i-1], rows[i])
		}
	}

	out, _, err = runCLI(t, env, "why", "echo", "--since", "10m", "--json")
	var why api.Why
	if err != nil || json.Unmarshal([]byte(out), &why) != nil || why.Service != "echo" || len(why.Evaluations) < 3 || len(why.Triggers) != 2 || why.Triggers[0].Next.IsZero() {
		t.Fatalf("why --json: %v\n%s", err, out)
	}
	if d := why.Until.Sub(why.Since); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("why --since 10m: window %v", d)
	}

	if _, _, err := runCLI(t, env, "why", "echo", "--since", "soon"); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Errorf("why --since soon = %v, want a usage error naming --since", err)
	}
	if _, _, err := runCLI(t, env, "why", "nosuch"); err == nil {
		t.Errorf("why of an unknown service succeeded")
	}
}
