package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	process.MaybeInit() // the process driver re-executes this binary as its sandbox init
	os.Exit(m.Run())
}

func runCLI(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli{stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	err := func() error {
		for _, c := range commands {
			if c.name == args[0] {
				return c.run(context.Background(), e, args[1:])
			}
		}
		return run(context.Background(), args, &out, &errb)
	}()
	return out.String(), errb.String(), err
}

func TestCLI(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the example service")
	cfg := node.DefaultConfig()
	cfg.Data, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	n, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	env := map[string]string{"ANDROMEDA_ADDR": n.Addr(), "ANDROMEDA_DATA": cfg.Data}

	// A copy of the example without main.wasm: submit builds it.
	dir := t.TempDir()
	for _, f := range []string{"andromeda.yaml", "main.go"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "greeter", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	// The SDK import needs the module: build inside the repo's module.
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module greeter\n\ngo 1.24\n\nrequire github.com/andromeda-runner/andromeda v0.0.0\n\nreplace github.com/andromeda-runner/andromeda => "+mustAbs(t, "../..")+"\n"), 0o644)
	t.Setenv("GOFLAGS", "-mod=mod") // let go fill in the replaced module's requirements, offline
	t.Setenv("GOPROXY", "off")
	sum, _ := os.ReadFile(filepath.Join("..", "..", "go.sum"))
	os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644)
	out, stderr, err := runCLI(t, env, "submit", dir)
	if err != nil {
		t.Fatalf("submit: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "greeter 1.0.0 submitted and deployed") || !strings.Contains(stderr, "building main.wasm") {
		t.Fatalf("submit printed:\n%s\n%s", out, stderr)
	}

	out, _, err = runCLI(t, env, "fire", "greeter", "--input", `{"name":"Ada"}`)
	if err != nil || !strings.Contains(out, "Outcome:") || !strings.Contains(out, "ok") || !strings.Contains(out, "Hello, Ada!") {
		t.Fatalf("fire: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "fire", "greeter", "--input", `{}`, "--json")
	var run api.Run
	if err != nil || json.Unmarshal([]byte(out), &run) != nil || run.Outcome != "noop" || run.Noop == "" {
		t.Fatalf("fire --json: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "runs", "greeter", "--json")
	var runs []api.Run
	if err != nil || json.Unmarshal([]byte(out), &runs) != nil || len(runs) != 2 {
		t.Fatalf("runs --json: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "runs")
	if err != nil || !strings.Contains(out, "OUTCOME") || !strings.Contains(out, "no name given") {
		t.Fatalf("runs: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "ls")
	if err != nil || !strings.Contains(out, "greeter") || !strings.Contains(out, "healthy") {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "inspect", "greeter")
	if err != nil || !strings.Contains(out, "Reasons:") || !strings.Contains(out, "driver wasm is available") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "ls", "--json")
	var list []api.Service
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}

	// A submitter token from the CLI, then a forbidden call with it.
	out, _, err = runCLI(t, env, "token", "create", "--name", "alice")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	env["ANDROMEDA_TOKEN"] = lines[len(lines)-1]
	if _, _, err := runCLI(t, env, "fire", "greeter"); err == nil || exitCode(err) != 4 {
		t.Fatalf("submitter fire: %v (exit %d), want 403 and exit 4", err, exitCode(err))
	}
	delete(env, "ANDROMEDA_TOKEN")

	// Bad manifest: the CLI names the field before uploading anything.
	os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte("name: Greeter!\nversion: one\n"), 0o644)
	if _, _, err := runCLI(t, env, "submit", dir); err == nil || !strings.Contains(err.Error(), "name:") || !strings.Contains(err.Error(), "version:") {
		t.Fatalf("bad manifest: %v", err)
	}
	if _, _, err := runCLI(t, env, "rm", "greeter"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, env, "inspect", "greeter"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("inspect after rm: %v", err)
	}
	if _, _, err := runCLI(t, env, "bogus"); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPolicyCLI runs keys, attest, policy explain and policy import offline.
func TestPolicyCLI(t *testing.T) {
	env := map[string]string{}
	dir := t.TempDir()
	for _, f := range []string{"andromeda.yaml", "main.go"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "greeter", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "main.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	key := filepath.Join(t.TempDir(), "hub.key")
	out, _, err := runCLI(t, env, "keys", "gen", key)
	if err != nil || !strings.Contains(out, "public key: ed25519:") {
		t.Fatalf("keys gen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	pubKey := strings.TrimSpace(string(pub))
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policyFile, []byte("trusted_hubs:\n  - {name: hub, key: \""+pubKey+"\"}\nrequire: {signatures: 1}\n"), 0o644)

	explain := func() policyDecision {
		t.Helper()
		out, _, err := runCLI(t, env, "policy", "explain", dir, "--policy", policyFile, "--json")
		if err != nil {
			t.Fatalf("explain: %v", err)
		}
		var d policyDecision
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("explain --json: %v\n%s", err, out)
		}
		return d
	}
	if d := explain(); d.Verdict != "reject" {
		t.Fatalf("unsigned: verdict %s", d.Verdict)
	}
	if out, _, err := runCLI(t, env, "attest", dir, "--key", key); err != nil || !strings.Contains(out, "signed sha256:") {
		t.Fatalf("attest: %v\n%s", err, out)
	}
	d := explain()
	if d.Verdict != "run" || d.Driver != "wasm" || len(d.Reasons) == 0 {
		t.Fatalf("signed: %+v", d)
	}
	// The explain JSON has exactly the documented keys.
	out, _, _ = runCLI(t, env, "policy", "explain", dir, "--policy", policyFile, "--json")
	var raw map[string]json.RawMessage
	json.Unmarshal([]byte(out), &raw)
	for _, k := range []string{"verdict", "driver", "limits", "network", "reasons"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("explain --json lacks %q", k)
		}
	}
	if out, _, err := runCLI(t, env, "policy", "explain", dir, "--policy", policyFile); err != nil || !strings.Contains(out, "verdict: run") || !strings.Contains(out, "Reasons:") {
		t.Fatalf("explain table: %v\n%s", err, out)
	}
	// A broken policy file names the place.
	os.WriteFile(policyFile, []byte("rules:\n  - {name: oops, expr: 'service.name ==', message: m}\n"), 0o644)
	if _, _, err := runCLI(t, env, "policy", "explain", dir, "--policy", policyFile); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("broken rule: %v", err)
	}
	// The seed's KLYNTAR config converts, key by key.
	out, stderr, err := runCLI(t, env, "policy", "import", "klyntar", filepath.Join("..", "..", "policy", "testdata", "klyntar", "runner.json"))
	if err != nil || !strings.Contains(stderr, "DESC_MAX_LEN") || !strings.Contains(out, "max_description") {
		t.Fatalf("import klyntar: %v\n%s\n%s", err, stderr, out)
	}
}

type policyDecision struct {
	Verdict string `json:"verdict"`
	Driver  string `json:"driver"`
	Reasons []struct {
		Rule string `json:"rule"`
		OK   bool   `json:"ok"`
	} `json:"reasons"`
}

// TestConformanceCLI certifies the repository's Node.js guest through the
// CLI, and shows a broken one fails.
func TestConformanceCLI(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		sandboxtest.Require(t, false, "node is needed for the conformance kit")
	}
	env := map[string]string{}
	guest := filepath.Join("..", "..", "sandbox", "process", "testdata", "guests", "node")
	out, _, err := runCLI(t, env, "conformance", guest, "--lang", "node")
	if strings.Contains(out, "cannot run here") || (err != nil && strings.Contains(err.Error(), "cannot run here")) {
		sandboxtest.Require(t, false, fmt.Sprint("the process driver cannot run on this host: ", err))
	}
	if err != nil || !strings.Contains(out, "conformant") {
		t.Fatalf("conformance of the node guest: %v\n%s", err, out)
	}
	broken := t.TempDir()
	os.WriteFile(filepath.Join(broken, "index.js"), []byte("exports.handle = () => ({});\n"), 0o644)
	if out, _, err := runCLI(t, env, "conformance", broken, "--lang", "node"); err == nil || !strings.Contains(out, "FAIL") {
		t.Fatalf("a broken guest passed: %v\n%s", err, out)
	}
}
