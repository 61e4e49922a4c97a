package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

// TestFlowCLI: flow apply creates, then says unchanged, then lists what a
// new version changes (with --dry-run writing nothing); a bad flow file
// prints every problem and exits 1; ls, ls --runtime, inspect and rm show
// and remove it; a file of another kind is a usage error.
func TestFlowCLI(t *testing.T) {
	_, env := startNode(t, nil)
	for _, name := range []string{"parse", "store"} {
		if _, errOut, err := runCLI(t, env, "submit", wasmService(t, name, "reactor.wasm")); err != nil {
			t.Fatalf("submit %s: %v\n%s", name, err, errOut)
		}
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := write("orders.yaml", "id: orders\nversion: 1.0.0\nmodules:\n  - {id: p, service: parse}\n  - {id: s, service: store}\nwires:\n  - {from: p, to: s}\n")
	out, _, err := runCLI(t, env, "flow", "apply", v1)
	if err != nil || !strings.Contains(out, "flow orders 1.0.0 created: 2 modules, 1 wires") || !strings.Contains(out, "does not run them yet") {
		t.Fatalf("flow apply = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "apply", v1); err != nil || !strings.Contains(out, "unchanged") {
		t.Errorf("flow apply again = %v\n%s", err, out)
	}
	v2 := write("orders.json", `{"id":"orders","version":"1.1.0","modules":[{"id":"p","service":"parse"},{"id":"s","service":"store"}],"wires":[{"from":"p","to":"s"},{"from":"s:error","to":"p","loop":2}]}`)
	out, _, err = runCLI(t, env, "flow", "apply", v2, "--dry-run")
	if err != nil || !strings.Contains(out, "would be updated (dry run: nothing written)") || !strings.Contains(out, "wire s:error → p:in (loop 2) added") {
		t.Errorf("flow apply --dry-run = %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "flow", "inspect", "orders")
	if err != nil || !strings.Contains(out, "flow orders 1.0.0") || !regexp.MustCompile(`(?m)^p\s+service parse\s+wasm$`).MatchString(out) || !strings.Contains(out, "p:out → s:in") {
		t.Errorf("flow inspect = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "apply", v2, "--json"); err != nil {
		t.Errorf("flow apply v2 = %v\n%s", err, out)
	} else {
		var a api.FlowApplied
		if json.Unmarshal([]byte(out), &a) != nil || a.Flow.Version != "1.1.0" || len(a.Changes) != 2 {
			t.Errorf("flow apply v2 --json:\n%s", out)
		}
	}

	bad := write("bad.toml", "id = \"Bad\"\nversion = \"1.0.0\"\n[[modules]]\nid = \"a\"\nservice = \"nope\"\n[[wires]]\nfrom = \"a\"\nto = \"zz\"\n")
	_, errOut, err := runCLI(t, env, "flow", "apply", bad)
	if err == nil {
		t.Fatal("a bad flow was applied")
	}
	for _, w := range []string{"id: must match", `modules[0].service: no service named "nope"`, `wires[0].to: no module "zz"`} {
		if !strings.Contains(err.Error()+errOut, w) {
			t.Errorf("the bad flow's errors lack %q:\n%v\n%s", w, err, errOut)
		}
	}
	if _, _, err := runCLI(t, env, "flow", "apply", write("orders.txt", "x")); err == nil || !strings.Contains(err.Error(), ".yaml, .yml, .json or .toml") {
		t.Errorf("flow apply orders.txt = %v", err)
	}

	out, _, err = runCLI(t, env, "flow", "ls")
	if err != nil || !regexp.MustCompile(`(?m)^orders\s+1\.1\.0\s+operator\s+2\s+2\s+wasm\s`).MatchString(out) {
		t.Errorf("flow ls = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "ls", "--runtime", "process/python"); err != nil || !strings.Contains(out, "no flows") {
		t.Errorf("flow ls --runtime process/python = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "rm", "orders"); err != nil || !strings.Contains(out, "flow orders removed") {
		t.Errorf("flow rm = %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, env, "flow", "inspect", "orders"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("flow inspect after rm = %v", err)
	}
}
