package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// TestRunsAll lists more runs than one page holds: --all and a --limit
// above 1000 follow the node's cursors; --since and --until take times and
// durations.
func TestRunsAll(t *testing.T) {
	ctx := context.Background()
	n, env := startNode(t, func(cfg *node.Config) { cfg.Runs.PerService = 2000 })
	if _, stderr, err := runCLI(t, env, "submit", echoService(t)); err != nil {
		t.Fatalf("submit: %v\n%s", err, stderr)
	}
	tok, err := node.OperatorToken(env["ANDROMEDA_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(n.Addr(), tok)
	const fired = 1010
	jobs := make(chan struct{}, fired)
	for range fired {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if _, err := c.Fire(ctx, "echo", nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	count := func(args ...string) (int, string) {
		t.Helper()
		out, stderr, err := runCLI(t, env, append([]string{"runs"}, args...)...)
		var runs []api.Run
		if err != nil || json.Unmarshal([]byte(out), &runs) != nil {
			t.Fatalf("runs %v: %v\n%s%s", args, err, out, stderr)
		}
		ids := map[string]bool{}
		for _, r := range runs {
			ids[r.ID] = true
		}
		if len(ids) != len(runs) {
			t.Fatalf("runs %v: %d runs, %d distinct", args, len(runs), len(ids))
		}
		return len(runs), stderr
	}
	for _, tc := range []struct {
		args []string
		want int
		more bool // the CLI says more runs follow
	}{
		{[]string{"echo", "--all", "--json"}, fired, false},
		{[]string{"--all", "--json"}, fired, false},
		{[]string{"--limit", "1005", "--json"}, 1005, true},
		{[]string{"echo", "--json"}, 20, true},
		{[]string{"echo", "--all", "--since", "1h", "--json"}, fired, false},
		{[]string{"echo", "--all", "--until", "1h", "--json"}, 0, false},
		{[]string{"--all", "--since", "2000-01-01T00:00:00Z", "--until", "1d", "--json"}, 0, false},
	} {
		got, stderr := count(tc.args...)
		if got != tc.want || strings.Contains(stderr, "more runs") != tc.more {
			t.Errorf("runs %v: %d runs, stderr %q; want %d, more %v", tc.args, got, stderr, tc.want, tc.more)
		}
	}
	if out, _, err := runCLI(t, env, "runs", "echo", "--until", "1h"); err != nil || !strings.Contains(out, "no runs") {
		t.Errorf("runs in an empty window: %v\n%s", err, out)
	}
	for _, tc := range []struct{ args, msg string }{
		{"--all --limit 5", "--all and --limit"},
		{"--limit 0", "--limit: must be 1 or more"},
		{"--since yesterday", "--since: must be an RFC 3339 time"},
		{"--until 2026-01-01", "--until: must be an RFC 3339 time"},
		{"--since 1h --until 2h", "--until: must be after --since"},
	} {
		if _, _, err := runCLI(t, env, append([]string{"runs"}, strings.Fields(tc.args)...)...); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("runs %s: %v, want %q", tc.args, err, tc.msg)
		}
	}
}
