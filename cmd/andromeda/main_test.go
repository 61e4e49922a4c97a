package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/docker"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// asCLI makes the test binary run as andromeda itself, for the shells
// that complete the command line by calling it.
const asCLI = "ANDROMEDA_TEST_AS_CLI"

func TestMain(m *testing.M) {
	process.MaybeInit() // the process driver re-executes this binary as its sandbox init
	docker.MaybeRelay() // the docker driver runs it in containers as a worker's relay
	if os.Getenv(asCLI) == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	if guestsDir != "" {
		os.RemoveAll(guestsDir)
	}
	os.Exit(code)
}

// runCLI runs `andromeda ARGS` with env as its environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli{stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	err := e.run(context.Background(), args)
	return out.String(), errb.String(), err
}

func TestCLI(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the example service")
	_, env := startNode(t, nil)

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

// TestHelp asks for help every way there is: each prints it on standard
// output and succeeds, as do bare andromeda and a group without its
// subcommand.
func TestHelp(t *testing.T) {
	root := "Services on a node:"
	runs := "andromeda runs [NAME] [flags]"
	for _, tc := range []struct {
		args []string
		want string // in the help
	}{
		{nil, root},
		{[]string{"help"}, root},
		{[]string{"--help"}, root},
		{[]string{"-h"}, root},
		{[]string{"help", "runs"}, runs},
		{[]string{"runs", "--help"}, runs},
		{[]string{"runs", "-h"}, runs},
		{[]string{"runs", "-help"}, runs}, // one dash, as the standard flag package took it
		{[]string{"runs", "greeter", "--limit", "5", "--help"}, runs},
		{[]string{"help", "store", "check"}, "andromeda store check [flags]"},
		{[]string{"store", "check", "--help"}, "andromeda store check [flags]"},
		{[]string{"store"}, "andromeda store [command]"},
		{[]string{"token", "create", "-h"}, "--role ROLE"},
		{[]string{"policy", "import", "klyntar", "--help"}, "andromeda policy import klyntar FILE [flags]"},
		{[]string{"completion", "--help"}, "andromeda completion fish"},
	} {
		name := strings.Join(tc.args, " ")
		if name == "" {
			name = "bare"
		}
		t.Run(name, func(t *testing.T) {
			out, stderr, err := runCLI(t, nil, tc.args...)
			if err != nil || stderr != "" || !strings.Contains(out, tc.want) || !strings.Contains(out, "Usage:") {
				t.Errorf("andromeda %s: err %v, stderr %q, stdout:\n%s\nwant help with %q on stdout", name, err, stderr, out, tc.want)
			}
		})
	}
}

// TestEveryCommandHasHelp walks the command tree: every command has a
// short line and examples, and prints its help for --help.
func TestEveryCommandHasHelp(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.Fields(c.CommandPath())[1:]
		generated := c.HasParent() && c.Parent().Name() == "completion" // cobra's own, with a long help instead
		if c.Short == "" || (c.Example == "" && !generated) {
			t.Errorf("andromeda %s: short %q, example %q: want both", strings.Join(path, " "), c.Short, c.Example)
		}
		for _, line := range strings.Split(c.Example, "\n") {
			if c.Example != "" && !strings.Contains(line, "andromeda ") {
				t.Errorf("andromeda %s: example line %q does not run andromeda", strings.Join(path, " "), line)
			}
		}
		out, stderr, err := runCLI(t, nil, append(path, "--help")...)
		if err != nil || stderr != "" || !strings.Contains(out, c.UseLine()) {
			t.Errorf("andromeda %s --help: err %v, stderr %q, stdout:\n%s", strings.Join(path, " "), err, stderr, out)
		}
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				walk(sub)
			}
		}
	}
	walk((&cli{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}).root())
}

// TestUsageErrors calls commands wrong: each is a usage error (exit 2)
// that says what was wrong, before anything reaches a node.
func TestUsageErrors(t *testing.T) {
	env := map[string]string{"ANDROMEDA_ADDR": "127.0.0.1:1", "ANDROMEDA_TOKEN": "unused"}
	for _, tc := range []struct {
		args, msg string
	}{
		{"bogus", `unknown command "bogus" for "andromeda"`},
		{"lss", "did you mean logs or ls?"},
		{"token bogus", `unknown command "bogus" for "andromeda token"`},
		{"completion tcsh", `unknown command "tcsh" for "andromeda completion"`},
		{"help bogus", `unknown command "bogus" for "andromeda"`},
		{"help store bogus", `unknown command "bogus" for "andromeda store"`},
		{"ls --bogus", "unknown flag: --bogus"},
		{"runs --limit many", `invalid argument "many" for "--limit"`},
		{"ls extra", `ls takes no arguments, got 1: ["extra"]`},
		{"inspect", "inspect takes 1 argument, got none"},
		{"deps add greeter", "deps add takes 2 arguments, got 1"},
		{"serve now", "serve takes no arguments"},
		{"fire greeter --input {", "--input: must be valid JSON"},
		{"runs --limit 0", "--limit: must be 1 or more"},
		{"attest .", "--key FILE: required"},
		{"store backup", "--out FILE is required"},
		{"policy explain . --policy a --config b", "--policy and --config: give one of them"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			out, _, err := runCLI(t, env, strings.Fields(tc.args)...)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || exitCode(err) != 2 || out != "" {
				t.Errorf("andromeda %s: err %v (exit %d), stdout %q; want exit 2 saying %q", tc.args, err, exitCode(err), out, tc.msg)
			}
		})
	}
	// What main prints: the error, the usage line, where help is.
	_, _, err := runCLI(t, env, "inspect", "a", "b")
	var b strings.Builder
	printError(&b, err)
	want := "andromeda: inspect takes 1 argument, got 2: [\"a\" \"b\"]\nusage: andromeda inspect NAME [flags]\nRun 'andromeda inspect --help' for more.\n"
	if b.String() != want {
		t.Errorf("printError:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestVersionJSON(t *testing.T) {
	for _, args := range [][]string{{"version", "--json"}, {"version", "-json"}} {
		out, _, err := runCLI(t, nil, args...)
		var v map[string]string
		if err != nil || json.Unmarshal([]byte(out), &v) != nil || v["version"] != node.Version || len(v) != 1 {
			t.Errorf("andromeda %s: %v\n%s\nwant {\"version\": %q}", strings.Join(args, " "), err, out, node.Version)
		}
	}
	if out, _, err := runCLI(t, nil, "version"); err != nil || out != "andromeda "+node.Version+"\n" {
		t.Errorf("andromeda version: %v, %q", err, out)
	}
}

// startNode starts a node on a free port with its data in a temporary
// dir, closed when t ends; change, when not nil, adjusts its config
// first. It returns the node and the environment that points the CLI at
// it with the operator's token.
func startNode(t *testing.T, change func(*node.Config)) (*node.Node, map[string]string) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Data, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	if change != nil {
		change(&cfg)
	}
	n, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, map[string]string{"ANDROMEDA_ADDR": n.Addr(), "ANDROMEDA_DATA": cfg.Data}
}
