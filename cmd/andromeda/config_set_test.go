package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

// TestConfigPatch: KEY=VALUE arguments become a merge patch: VALUE as JSON
// when it parses, else text; dotted keys nest; a malformed argument is a
// usage error.
func TestConfigPatch(t *testing.T) {
	got, err := configPatch([]string{"n=5", "s=text", "q=\"5\"", "on=true", "gone=null", "a.b=1", "a.c=[1,2]", "url=https://x.example/a=b"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"n": 5.0, "s": "text", "q": "5", "on": true, "gone": nil,
		"a": map[string]any{"b": 1.0, "c": []any{1.0, 2.0}}, "url": "https://x.example/a=b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("configPatch = %#v, want %#v", got, want)
	}
	for _, bad := range [][]string{{"novalue"}, {"a..b=1"}, {".a=1"}, {"a=1", "a.b=2"}, {"a=1", "a=2"}} {
		if _, err := configPatch(bad); err == nil {
			t.Errorf("configPatch(%q) succeeded, want a usage error", bad)
		}
	}
}

// TestConfigCLI: a service submitted with andromeda.toml; config set makes
// revision 2, which get, history, inspect and the next run show; a config
// the node refuses is an error naming the key, and changes nothing.
func TestConfigCLI(t *testing.T) {
	_, env := startNode(t, nil)
	dir := echoService(t)
	os.Remove(filepath.Join(dir, "andromeda.yaml"))
	os.WriteFile(filepath.Join(dir, "andromeda.toml"), []byte(`name = "echo"
version = "1.0.0"
mode = "command"
runtime = {driver = "wasm", language = "wasm", entry = "echo.wasm"}
triggers = [{kind = "manual"}]
resources = {memory = "16Mi", timeout = "5s", concurrency = 4}
capabilities = {network = "none"}
config = {greeting = "hello"}
`), 0o644)
	if _, stderr, err := runCLI(t, env, "submit", dir); err != nil {
		t.Fatalf("submit andromeda.toml: %v\n%s", err, stderr)
	}
	out, _, err := runCLI(t, env, "config", "set", "echo", "greeting=hi", "limits.max=3")
	if err != nil || !strings.Contains(out, "Revision:  2 (current)") || !strings.Contains(out, `"hi"`) {
		t.Fatalf("config set = %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "config", "get", "echo", "--json")
	var sc api.ServiceConfig
	if err != nil || json.Unmarshal([]byte(out), &sc) != nil || sc.Revision != 2 || sc.Config["greeting"] != "hi" || !reflect.DeepEqual(sc.Config["limits"], map[string]any{"max": 3.0}) {
		t.Fatalf("config get --json = %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, env, "config", "get", "echo", "--revision", "1"); err != nil || !strings.Contains(out, `"hello"`) {
		t.Errorf("config get --revision 1 = %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "config", "history", "echo")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 3 || !strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "1 submit 1.0.0") ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[2]), " "), "2* config 1.0.0") || !strings.Contains(lines[2], "greeting,limits") {
		t.Errorf("config history = %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, env, "inspect", "echo"); err != nil || !strings.Contains(out, "Revision:") || !strings.Contains(out, "2, config sha256:") {
		t.Errorf("inspect = %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, env, "fire", "echo"); err != nil || !strings.Contains(out, "Revision:") {
		t.Errorf("fire = %v\n%s", err, out)
	}
	_, _, err = runCLI(t, env, "config", "set", "echo", "big="+strings.Repeat("x", 70<<10))
	if err == nil || !strings.Contains(err.Error(), "config: must be at most 65536 bytes as JSON") {
		t.Errorf("config set with a too large config = %v; want the rule", err)
	}
	if out, _, _ = runCLI(t, env, "config", "history", "echo"); strings.Count(strings.TrimSpace(out), "\n") != 2 {
		t.Errorf("a refused change made a revision:\n%s", out)
	}
}
