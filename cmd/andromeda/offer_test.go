package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// wasmService writes a service directory running module (a reactor from
// sandbox/wasm/testdata).
func wasmService(t *testing.T, name, module string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	bin, err := os.ReadFile(filepath.Join("..", "..", "sandbox", "wasm", "testdata", module))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "main.wasm"), bin, 0o644)
	os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte("name: "+name+"\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: main.wasm}\n"), 0o644)
	return dir
}

// TestOfferCLI: andromeda offer shows the node's offer with the
// operator's properties and prices; runtimes lists the runtimes; selftest runs a driver's self-test;
// a service's self-test runs at submit (a failing one refuses it with its
// message) and on andromeda test NAME.
func TestOfferCLI(t *testing.T) {
	_, env := startNode(t, func(c *node.Config) {
		c.Offer = node.OfferConfig{Properties: map[string]any{"region": "eu-west"}, Prices: map[string]float64{"cpu_seconds": 0.02}, Currency: "GLM"}
	})
	out, _, err := runCLI(t, env, "offer")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DRIVERS", "wasm", "andromeda.node.name", `region`, `"eu-west"`, "PRICES (GLM per unit)", "cpu_seconds"} {
		if !strings.Contains(out, want) {
			t.Errorf("offer lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCLI(t, env, "offer", "--json")
	var o api.Offer
	if err != nil || json.Unmarshal([]byte(out), &o) != nil || o.Properties["region"] != "eu-west" || o.Prices["cpu_seconds"] != 0.02 {
		t.Errorf("offer --json = %v\n%s", err, out)
	}

	out, _, err = runCLI(t, env, "runtimes")
	if err != nil || !strings.Contains(out, "ID") || !regexp.MustCompile(`(?m)^wasm\s+WebAssembly\s+wazero \S+\s+driver\s+enabled`).MatchString(out) {
		t.Errorf("runtimes = %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "runtimes", "--json")
	var rs []api.Runtime
	if err != nil || json.Unmarshal([]byte(out), &rs) != nil || !slices.ContainsFunc(rs, func(r api.Runtime) bool { return r.ID == "wasm" && r.Enabled }) {
		t.Errorf("runtimes --json = %v\n%s", err, out)
	}

	out, _, err = runCLI(t, env, "selftest", "wasm")
	if err != nil || !strings.Contains(out, "wasm  ok") {
		t.Errorf("selftest wasm = %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, env, "selftest", "nope"); err == nil || !strings.Contains(err.Error(), `"nope" is neither a driver nor a runtime`) {
		t.Errorf("selftest nope = %v", err)
	}

	if out, errOut, err := runCLI(t, env, "submit", wasmService(t, "tested", "selftest-pass.wasm")); err != nil {
		t.Fatalf("%v\n%s%s", err, out, errOut)
	}
	out, _, err = runCLI(t, env, "test", "tested")
	if err != nil || !strings.Contains(out, "tested: self-test passed") {
		t.Errorf("test tested = %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, env, "submit", wasmService(t, "untested", "reactor.wasm")); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runCLI(t, env, "test", "untested"); err != nil || !strings.Contains(out, "untested: no self-test") {
		t.Errorf("test untested = %v\n%s", err, out)
	}
	_, _, err = runCLI(t, env, "submit", wasmService(t, "failing", "selftest-fail.wasm"))
	if err == nil || !strings.Contains(err.Error(), "self-test failed") || !strings.Contains(err.Error(), "self-test: the answer is not 42") {
		t.Errorf("submit of a service whose self-test fails = %v", err)
	}
	if _, _, err := runCLI(t, env, "test", "nosuch"); err == nil {
		t.Error("test of an unknown service succeeded")
	}
}
