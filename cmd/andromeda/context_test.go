package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
)

// TestContexts: a node started on its own port and data dir is reached
// through a context, by name or as the current one; the file is private;
// flags and the environment win over the current context, which is never
// used with another node's address; bad names and unknown contexts are
// refused with the rule.
func TestContexts(t *testing.T) {
	const first = "first"
	_, env1 := startNode(t, func(c *node.Config) { c.Name = first })
	_, env2 := startNode(t, func(c *node.Config) { c.Name = "second" })
	cfgHome := t.TempDir()
	env := map[string]string{"XDG_CONFIG_HOME": cfgHome}

	if out, _, err := runCLI(t, env, "context", "ls"); err != nil || !strings.HasPrefix(out, "no contexts") {
		t.Fatalf("context ls with none = %q, %v", out, err)
	}
	if out, _, err := runCLI(t, env, "context", "add", "one", "--node", env1["ANDROMEDA_ADDR"], "--data", env1["ANDROMEDA_DATA"]); err != nil || !strings.Contains(out, "context one added") || !strings.Contains(out, "current") {
		t.Fatalf("context add one = %q, %v", out, err)
	}
	tok2, _, err := runCLI(t, env2, "token", "create", "--name", "ci", "--role", "operator", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(tok2), &created); err != nil || created.Token == "" {
		t.Fatalf("token create = %q, %v", tok2, err)
	}
	if out, _, err := runCLI(t, env, "context", "add", "two", "--node", env2["ANDROMEDA_ADDR"], "--token", created.Token); err != nil || strings.Contains(out, "current") {
		t.Fatalf("context add two = %q, %v; want added, not current", out, err)
	}
	path := filepath.Join(cfgHome, "andromeda", contextFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("contexts file %s: %v, %v; want mode 0600", path, fi, err)
	}

	nodeName := func(args ...string) string {
		t.Helper()
		out, errOut, err := runCLI(t, env, append([]string{"nodes", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("nodes %q: %v %s", args, err, errOut)
		}
		var ns []struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(out), &ns); err != nil || len(ns) != 1 {
			t.Fatalf("nodes %q = %q, %v", args, out, err)
		}
		return ns[0].Name
	}
	if got := nodeName(); got != first {
		t.Errorf("with context one current, nodes answered from %q", got)
	}
	if got := nodeName("--context", "two"); got != "second" {
		t.Errorf("nodes --context two answered from %q, want second", got)
	}
	env["ANDROMEDA_CONTEXT"] = "two"
	if got := nodeName(); got != "second" {
		t.Errorf("ANDROMEDA_CONTEXT=two: nodes answered from %q, want second", got)
	}
	delete(env, "ANDROMEDA_CONTEXT")
	if out, _, err := runCLI(t, env, "context", "use", "two"); err != nil || !strings.Contains(out, "current context: two") {
		t.Fatalf("context use two = %q, %v", out, err)
	}
	if got := nodeName(); got != "second" {
		t.Errorf("with context two current, nodes answered from %q", got)
	}
	// An address given names another node: the current context's token is
	// not sent there (the data dir's operator token is used instead).
	env["ANDROMEDA_ADDR"], env["ANDROMEDA_DATA"] = env1["ANDROMEDA_ADDR"], env1["ANDROMEDA_DATA"]
	if got := nodeName(); got != first {
		t.Errorf("ANDROMEDA_ADDR of the first node: nodes answered from %q", got)
	}
	delete(env, "ANDROMEDA_ADDR")
	delete(env, "ANDROMEDA_DATA")

	out, _, err := runCLI(t, env, "context", "ls", "--json")
	if err != nil || strings.Contains(out, created.Token) {
		t.Fatalf("context ls --json = %q, %v; it must not print a token", out, err)
	}
	var list []contextView
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].Name != "one" || list[1].Name != "two" || !list[1].Current || !strings.HasPrefix(list[0].Auth, "operator token in ") {
		t.Errorf("context ls --json = %+v, %v", list, err)
	}
	if out, _, err := runCLI(t, env, "context", "ls"); err != nil || !strings.Contains(out, "*  ") || strings.Contains(out, created.Token) {
		t.Errorf("context ls = %q, %v", out, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"context", "add", "a/b", "--node", "x:1"}, "NAME: must be"},
		{[]string{"context", "add", "x"}, "--node: required"},
		{[]string{"context", "add", "x", "--node", "x:1", "--token", "t", "--data", "d"}, "give one"},
		{[]string{"context", "use", "nope"}, `no context "nope"`},
		{[]string{"context", "rm", "nope"}, `no context "nope"`},
		{[]string{"ls", "--context", "nope"}, `no context "nope"`},
	} {
		_, _, err := runCLI(t, env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%q = %v (exit %d); want a usage error with %q", tc.args, err, exitCode(err), tc.want)
		}
	}
	// A file edited by hand wrong is refused with the key and the rule;
	// a command that names its node does not read it.
	good, _ := os.ReadFile(path)
	os.WriteFile(path, append([]byte("curent = \"two\"\n"), good...), 0o600)
	if _, _, err := runCLI(t, env, "ls"); err == nil || !strings.Contains(err.Error(), `curent: unknown field "curent" (did you mean "current"?)`) {
		t.Errorf("ls with a broken contexts file = %v", err)
	}
	named := maps.Clone(env1)
	named["XDG_CONFIG_HOME"] = cfgHome
	if _, _, err := runCLI(t, named, "ls"); err != nil {
		t.Errorf("ls naming its node, beside a broken contexts file: %v", err)
	}
	os.WriteFile(path, good, 0o600)
	if out, _, err := runCLI(t, env, "context", "rm", "two"); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("context rm two = %q, %v", out, err)
	}
	if out, _, _ := runCLI(t, env, "context", "ls"); strings.Contains(out, "*") {
		t.Errorf("after removing the current context, ls still marks one:\n%s", out)
	}
}
