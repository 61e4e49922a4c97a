package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// runCLIIn is runCLI with stdin as the command's standard input.
func runCLIIn(t *testing.T, env map[string]string, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli{stdout: &out, stderr: &errb, stdin: strings.NewReader(stdin), getenv: func(k string) string { return env[k] }}
	err := e.run(context.Background(), args)
	return out.String(), err
}

// TestSecretsCLI: a secret set with andromeda secrets set, from standard
// input or a file, checks a running node's webhook at once, without a
// restart; list shows names and sources, never values; rm removes it, and
// the webhook answers 503 again. A name the config holds, an empty value
// and a bad name are refused.
func TestSecretsCLI(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the webhook test service")
	ctx := context.Background()
	n, env := startNode(t, func(c *node.Config) { c.Secrets = map[string]string{"github": "from-config"} })

	// The webhook test service of package node, built for wasm.
	dir := t.TempDir()
	src := filepath.Join("..", "..", "node", "testdata", "hook")
	b, err := os.ReadFile(filepath.Join(src, "andromeda.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := gobuild.Wasm(ctx, src, filepath.Join(dir, "main.wasm"), gobuild.Reactor); err != nil {
		t.Fatal(err)
	}
	tgz, err := archive.Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := node.OperatorToken(env["ANDROMEDA_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(n.Addr(), tok).Submit(ctx, tgz); err != nil {
		t.Fatal(err)
	}
	hook := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+n.HooksAddr()+"/hooks/bearer", strings.NewReader(`{"http": {"status": 202}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := hook("tok-1"); got != http.StatusServiceUnavailable {
		t.Fatalf("webhook before its secret is set = %d, want 503", got)
	}

	out, err := runCLIIn(t, env, "tok-1\n", "secrets", "set", "deploy-token")
	if err != nil || out != "secret deploy-token set\n" {
		t.Fatalf("secrets set = %q, %v", out, err)
	}
	if got := hook("tok-1"); got != http.StatusAccepted {
		t.Errorf("webhook with the secret set from stdin (its newline dropped) = %d, want 202", got)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLIIn(t, env, "", "secrets", "set", "deploy-token", "--from-file", file); err != nil {
		t.Fatal(err)
	}
	if got, old := hook("tok-2"), hook("tok-1"); got != http.StatusAccepted || old != http.StatusUnauthorized {
		t.Errorf("webhook after the secret changed: new token %d, old %d; want 202 and 401", got, old)
	}

	out, err = runCLIIn(t, env, "", "secrets", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "deploy-token  store") || !strings.Contains(out, "github        config  -") || strings.Contains(out, "tok-2") || strings.Contains(out, "from-config") {
		t.Errorf("secrets list =\n%s\nwant both names with their sources and no values", out)
	}
	out, err = runCLIIn(t, env, "", "secrets", "list", "--json")
	if err != nil || !strings.Contains(out, `"source": "config"`) || strings.Contains(out, "tok-2") {
		t.Errorf("secrets list --json = %s, %v", out, err)
	}

	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"x", []string{"secrets", "set", "github"}, "held in the node config"},
		{"\n", []string{"secrets", "set", "empty"}, "the secret's value is empty"},
		{"x", []string{"secrets", "set", "Bad_Name"}, "name: must name a secret"},
		{"", []string{"secrets", "rm", "github"}, "held in the node config"},
		{"", []string{"secrets", "rm", "nope"}, "not found"},
		{"", []string{"secrets", "set"}, "takes 1 argument"},
	} {
		_, err := runCLIIn(t, env, tc.stdin, tc.args...)
		var ae *api.Error
		msg := ""
		if err != nil {
			msg = err.Error()
			if errors.As(err, &ae) {
				msg += " " + strings.Join(ae.Problems, "; ")
			}
		}
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%v = %v, want an error saying %q", tc.args, msg, tc.want)
		}
	}

	if out, err := runCLIIn(t, env, "", "secrets", "rm", "deploy-token"); err != nil || out != "secret deploy-token removed\n" {
		t.Fatalf("secrets rm = %q, %v", out, err)
	}
	if got := hook("tok-2"); got != http.StatusServiceUnavailable {
		t.Errorf("webhook after its secret was removed = %d, want 503", got)
	}
}
