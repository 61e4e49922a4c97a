package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// TestMetricsExposure: by default /metrics is open and names only the
// operator's services, a submitter's being counted under "_submitter"; with
// access token and service_labels all it needs an operator token and names
// every service. Submitters do not see the data dir in /v1/node.
func TestMetricsExposure(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		metrics  node.MetricsConfig
		anon     int    // GET /metrics without a token
		opLabel  string // the operator's greeter
		subLabel string // alice's hello
	}{
		{"default", node.MetricsConfig{}, 200, `service="greeter"`, `service="_submitter"`},
		{"token, all", node.MetricsConfig{Access: "token", ServiceLabels: "all"}, 401, `service="greeter"`, `service="hello"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, func(c *node.Config) { c.HTTP.Metrics = tc.metrics })
			if _, err := n.op.Submit(ctx, pack(t, example(t, "greeter"))); err != nil {
				t.Fatal(err)
			}
			tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
			if err != nil {
				t.Fatal(err)
			}
			alice := api.NewClient(n.Addr(), tok.Secret)
			dir := example(t, "greeter")
			m, _ := os.ReadFile(filepath.Join(dir, "andromeda.yaml"))
			os.WriteFile(filepath.Join(dir, "andromeda.yaml"), bytes.Replace(m, []byte("name: greeter"), []byte("name: hello"), 1), 0o644)
			if _, err := alice.Submit(ctx, pack(t, dir)); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"greeter", "hello"} {
				if _, err := n.op.Fire(ctx, s, json.RawMessage(`{"name":"x"}`)); err != nil {
					t.Fatal(err)
				}
			}

			get := func(token string) (int, string) {
				req, _ := http.NewRequest("GET", n.URL()+"/metrics", nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body)
			}
			if code, _ := get(""); code != tc.anon {
				t.Fatalf("GET /metrics without a token = %d, want %d", code, tc.anon)
			}
			if tc.anon != 200 {
				if code, _ := get(tok.Secret); code != 403 {
					t.Fatalf("GET /metrics with a submitter token = %d, want 403", code)
				}
			}
			opToken, _ := node.OperatorToken(n.cfg.Data)
			code, body := get(opToken)
			if code != 200 {
				t.Fatalf("GET /metrics with the operator token = %d", code)
			}
			for _, label := range []string{tc.opLabel, tc.subLabel} {
				if want := `andromeda_invocations_total{` + label + `,outcome="ok"} 1`; !strings.Contains(body, want) {
					t.Errorf("metrics lack %s:\n%s", want, body)
				}
			}
			if tc.subLabel == `service="_submitter"` && strings.Contains(body, "hello") {
				t.Errorf("metrics name the submitter's service:\n%s", body)
			}

			info, err := alice.Node(ctx)
			if err != nil || info.Data != "" {
				t.Errorf("submitter's /v1/node: data_dir %q, %v; want it hidden", info.Data, err)
			}
			if info, err := n.op.Node(ctx); err != nil || info.Data != n.cfg.Data {
				t.Errorf("operator's /v1/node: data_dir %q, %v; want %q", info.Data, err, n.cfg.Data)
			}
		})
	}
}
