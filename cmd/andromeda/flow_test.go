package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
	if err != nil || !strings.Contains(out, "flow orders 1.0.0 created: 2 modules, 1 wires") {
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
	if err != nil || !strings.Contains(out, "flow orders 1.0.0") || !regexp.MustCompile(`(?m)^p\s+service parse\s+wasm\s+0\s+0\s+0\s+0\s*$`).MatchString(out) || !strings.Contains(out, "p:out → s:in") {
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

	// Running it: start, fire (waiting, then not), runs, stop.
	if out, _, err := runCLI(t, env, "flow", "fire", "orders", "--input", "{}"); err == nil || !strings.Contains(err.Error(), "start it first") {
		t.Errorf("flow fire before start = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "start", "orders"); err != nil || !strings.Contains(out, "flow orders 1.1.0 running: 0 queued") {
		t.Errorf("flow start = %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "flow", "fire", "orders", "--input", `{"id": 7}`)
	if err != nil || !regexp.MustCompile(`flow run \S+ of orders 1\.1\.0: \w+ in `).MatchString(out) || !regexp.MustCompile(`(?m)^\s+p\s+parse\s+\S+\s+\w+\s+\S+\s+input$`).MatchString(out) {
		t.Errorf("flow fire = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "fire", "orders", "--input", "{", "--no-wait"); err == nil || !strings.Contains(err.Error(), "--input: must be valid JSON") {
		t.Errorf("flow fire --input { = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "fire", "orders", "--no-wait"); err != nil || !strings.Contains(out, "queued (andromeda flow runs orders)") {
		t.Errorf("flow fire --no-wait = %v\n%s", err, out)
	}
	var rs []api.FlowRun
	if out, _, err := runCLI(t, env, "flow", "runs", "orders", "--json"); err != nil || json.Unmarshal([]byte(out), &rs) != nil || len(rs) == 0 || rs[len(rs)-1].Steps[0].Module != "p" {
		t.Errorf("flow runs --json = %v\n%s", err, out)
	}
	if len(rs) > 0 {
		last := rs[len(rs)-1]
		out, _, err := runCLI(t, env, "flow", "rerun", "orders/"+last.ID)
		if err != nil || !strings.Contains(out, ", a re-run of "+last.ID) || !strings.Contains(out, "failed at p") {
			t.Errorf("flow rerun = %v\n%s", err, out)
		}
		if out, _, err := runCLI(t, env, "flow", "rerun", last.ID); err == nil || !strings.Contains(err.Error(), "want FLOW/RUN") {
			t.Errorf("flow rerun RUN = %v\n%s", err, out)
		}
	}
	if out, _, err := runCLI(t, env, "flow", "runs", "orders", "--dead-letters"); err != nil || !strings.Contains(out, "no flow runs") {
		t.Errorf("flow runs --dead-letters = %v\n%s; want none (no hot update removed a module)", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "runs", "orders", "--limit", "0"); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("flow runs --limit 0 = %v\n%s", err, out)
	}
	// A breakpoint, a step, and off again.
	if out, _, err := runCLI(t, env, "flow", "break", "orders"); err == nil || !strings.Contains(err.Error(), "want FLOW/MODULE") {
		t.Errorf("flow break orders = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "break", "orders/p"); err != nil || !strings.Contains(out, "flow orders: breakpoint set: messages are held at p") {
		t.Errorf("flow break orders/p = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "fire", "orders", "--input", `{"held": true}`, "--no-wait"); err != nil {
		t.Errorf("flow fire = %v\n%s", err, out)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, _, err := runCLI(t, env, "flow", "inspect", "orders")
		if err == nil && strings.Contains(out, "HELD AT p (andromeda flow step orders)") && strings.Contains(out, `{"held":true}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flow inspect shows nothing held at p after 30s: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, _, err := runCLI(t, env, "flow", "step", "orders"); err != nil || !regexp.MustCompile(`(?m)^p: run \S+\n  in:  \{"held":true\}\n  error: `).MatchString(out) {
		t.Errorf("flow step = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "step", "orders"); err != nil || !strings.Contains(out, "nothing held") {
		t.Errorf("flow step again = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "unbreak", "orders/p"); err != nil || !strings.Contains(out, "breakpoint removed") {
		t.Errorf("flow unbreak = %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "flow", "stop", "orders"); err != nil || !strings.Contains(out, "flow orders 1.1.0 stopped") {
		t.Errorf("flow stop = %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "flow", "runs", "orders")
	if err != nil || !regexp.MustCompile(`(?m)^RUN\s+VERSION\s+OUTCOME\s+STEPS`).MatchString(out) || strings.Count(out, "1.1.0") != 4 {
		t.Errorf("flow runs = %v\n%s", err, out)
	}

	out, _, err = runCLI(t, env, "flow", "ls")
	if err != nil || !regexp.MustCompile(`(?m)^orders\s+1\.1\.0\s+stopped\s+0\s+operator\s+2\s+2\s+wasm\s`).MatchString(out) {
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
