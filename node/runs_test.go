package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// echoService writes a service directory holding the wasm driver's tiny
// self-test module, a command that needs no toolchain to build and runs in
// well under a millisecond.
func echoService(t testing.TB, name string) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "sandbox", "wasm", "echo.wasm"), filepath.Join(dir, "echo.wasm"))
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: echo.wasm}\nmode: command\n" +
		"triggers:\n  - {kind: manual}\nresources: {memory: 16Mi, timeout: 5s, concurrency: 4}\ncapabilities: {network: none}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fireN fires service n times, from as many callers as it runs at once.
func fireN(t testing.TB, c *api.Client, service string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if _, err := c.Fire(context.Background(), service, json.RawMessage(`{"noop":"paging"}`)); err != nil {
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
}

// TestRunsPaging reads more than a thousand runs of one service through
// the API, a page at a time, and finds the oldest by id.
func TestRunsPaging(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, func(c *node.Config) { c.Runs.PerService = 2000 })
	if _, err := n.op.Submit(ctx, pack(t, echoService(t, "echo"))); err != nil {
		t.Fatal(err)
	}
	const fired = 1100
	fireN(t, n.op, "echo", fired)

	for _, service := range []string{"echo", ""} { // the service's runs, then every service's
		seen := map[string]bool{}
		var ids []string
		pages := 0
		q := api.RunQuery{Limit: 1000}
		for {
			l, err := n.op.ListRuns(ctx, service, q)
			if err != nil {
				t.Fatalf("page %d of %q: %v", pages+1, service, err)
			}
			pages++
			for i, r := range l.Runs {
				if seen[r.ID] {
					t.Fatalf("run %s on two pages", r.ID)
				}
				seen[r.ID] = true
				ids = append(ids, r.ID)
				if i > 0 && r.Start.After(l.Runs[i-1].Start.Add(time.Second)) {
					t.Fatalf("page %d not newest first: %s started after %s", pages, r.Start, l.Runs[i-1].Start)
				}
			}
			if l.Next == "" {
				break
			}
			q.Cursor = l.Next
		}
		if len(ids) != fired || pages != 2 {
			t.Fatalf("runs of %q: %d in %d pages, want %d in 2", service, len(ids), pages, fired)
		}
		// The oldest, behind a thousand newer ones, by id.
		if r, err := n.op.Run(ctx, "echo", ids[len(ids)-1]); err != nil || r.ID != ids[len(ids)-1] {
			t.Fatalf("oldest run by id = %+v, %v", r, err)
		}
	}

	// A window around nothing, and the wire shape: an object with runs.
	resp := getAsOperator(t, n, "/v1/services/echo/runs?until="+url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)))
	if resp.status != 200 || strings.TrimSpace(resp.body) != "{\n  \"runs\": []\n}" {
		t.Fatalf("empty window = %d %s", resp.status, resp.body)
	}
	for _, tc := range []struct{ query, msg string }{
		{"limit=1001", "limit: must be an integer from 1 to 1000"},
		{"cursor=42", "cursor: must be the next value"},
		{"since=yesterday", "since: must be an RFC 3339 time"},
		{"until=2026-13-01T00:00:00Z", "until: must be an RFC 3339 time"},
		{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until: must be after since"},
	} {
		for _, path := range []string{"/v1/runs", "/v1/services/echo/runs"} {
			resp := getAsOperator(t, n, path+"?"+tc.query)
			var e api.Error
			json.Unmarshal([]byte(resp.body), &e)
			if resp.status != 400 || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("GET %s?%s = %d %q, want 400 %q", path, tc.query, resp.status, e.Message, tc.msg)
			}
		}
	}
}

type answer struct {
	status int
	body   string
}

// getAsOperator calls the node's API as the operator.
func getAsOperator(t *testing.T, n *testNode, path string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+n.op.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b)}
}
