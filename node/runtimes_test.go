package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// toyRuntime builds testdata/toyrt (a runtime speaking the protocol
// through runtimes/go) once per test binary: good, and broken (answers
// every invocation with a noop).
var (
	toyOnce            sync.Once
	toyDir             string
	toyErr             error
	toyGood, toyBroken string
)

func toyRuntime(t *testing.T) (good, broken string) {
	t.Helper()
	toyOnce.Do(func() {
		if toyDir, toyErr = os.MkdirTemp("", "andromeda-toyrt-"); toyErr != nil {
			return
		}
		toyGood, toyBroken = filepath.Join(toyDir, "toyrt"), filepath.Join(toyDir, "toyrt-broken")
		env := []string{"CGO_ENABLED=0"}
		if toyErr = sandboxtest.GoBuild("./testdata/toyrt", toyGood, env); toyErr == nil {
			toyErr = sandboxtest.GoBuild("./testdata/toyrt", toyBroken, env, "-ldflags", "-X main.brokenDefault=yes")
		}
	})
	sandboxtest.Require(t, !errors.Is(toyErr, sandboxtest.ErrNoGo), "the go toolchain is needed to build the test runtime")
	if toyErr != nil {
		t.Fatal(toyErr)
	}
	return toyGood, toyBroken
}

// writeFiles writes files (path → content) under dir; mode 0755 for a
// path ending in "*" (the star is dropped), 0644 otherwise; directories
// 0755 (workers run as another user).
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		mode := os.FileMode(0o644)
		if n, ok := strings.CutSuffix(name, "*"); ok {
			name, mode = n, 0o755
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
}

func toyService(t *testing.T, name, lang, program string, mode ...string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: process, language: " + lang + ", entry: main.toy}\n"
	if len(mode) > 0 {
		m += "mode: " + mode[0] + "\n"
	}
	writeFiles(t, dir, map[string]string{
		"andromeda.yaml": m,
		"main.toy":       program,
	})
	return pack(t, dir)
}

func offerRuntime(o api.Offer, name string) api.OfferRuntime {
	for _, r := range o.Runtimes {
		if r.Name == name {
			return r
		}
	}
	return api.OfferRuntime{}
}

// TestDescriptorRuntimes registers runtimes by descriptor: a Go program
// speaking the runtime protocol is certified, injects its properties into
// the offer and runs a language: toy service end to end; a broken one is
// disabled with its reason in the offer and a service for it is refused
// with that reason, until the program is fixed and andromeda selftest
// certifies it again; descriptors with bad paths are refused, naming the
// field. A service whose self-test fails does not deploy, with the
// test's message.
func TestDescriptorRuntimes(t *testing.T) {
	good, broken := toyRuntime(t)
	ctx := context.Background()
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	rt := filepath.Join(root, "runtimes.d")
	exe, _ := os.ReadFile(good)
	bad, _ := os.ReadFile(broken)
	writeFiles(t, rt, map[string]string{
		"bin/toyrt*":      string(exe),
		"bin/flaky*":      string(bad),
		"data.txt":        "not a program",
		"guest/guest.toy": "guest\n",
		"toy.yaml": `name: toy
version: 1.2.3
description: a one-file language for tests
path: bin/toyrt
languages: [toy]
entry: main.toy
extensions: [.toy]
modes: [server]
conformance: guest/guest.toy
`,
		"flaky.yaml":     "name: flaky\nversion: 0.1.0\npath: bin/flaky\nmodes: [server]\nconformance: guest/guest.toy\n",
		"missing.yaml":   "name: missing\nversion: 1.0.0\npath: bin/nope\nconformance: guest/guest.toy\n",
		"notexec.yaml":   "name: notexec\nversion: 1.0.0\npath: data.txt\nconformance: guest/guest.toy\n",
		"directory.yaml": "name: directory\nversion: 1.0.0\npath: bin\nconformance: guest/guest.toy\n",
		"escape.yaml":    "name: escape\nversion: 1.0.0\npath: ../outside/toyrt\nconformance: guest/guest.toy\n",
		"typo.yaml":      "name: typo\nversion: 1.0.0\npaht: bin/toyrt\nconformance: guest/guest.toy\n",
	})
	writeFiles(t, filepath.Join(root, "outside"), map[string]string{"toyrt*": string(exe)})

	begin := time.Now()
	// A process driver without Node.js and Python: this test needs only
	// its sandbox, and their self-tests would cost seconds.
	p := process.New(process.Config{WorkDir: filepath.Join(t.TempDir(), "process"), Node: "no-such-node", Python: "no-such-python",
		Logger: slog.New(slog.DiscardHandler)})
	n := startNodeWith(t, p, func(c *node.Config) { c.Runtimes = rt })
	t.Logf("node started in %v", time.Since(begin))
	var enabled bool
	var why string
	for _, d := range n.Node.Node(ctx).Drivers {
		if d.Name == "process" {
			enabled, why = d.Enabled, d.Reason
		}
	}
	sandboxtest.Require(t, enabled, "the process driver is disabled on this host: "+why)

	offer, err := n.op.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	toy := offerRuntime(offer, "toy")
	if toy.Status != "enabled" || toy.Version != "1.2.3" || toy.Properties["toy.flavour"] != "vanilla" || toy.Certified.IsZero() {
		t.Errorf("offer's toy runtime = %+v, want enabled, certified, with its properties", toy)
	}
	if offer.Properties["toy.flavour"] != "vanilla" {
		t.Errorf("offer properties lack what toy injected: %v", offer.Properties)
	}
	if langs, _ := offer.Properties["andromeda.driver.process.languages"].(map[string]any); langs["toy"] != "toy 1.2.3" {
		t.Errorf("andromeda.driver.process.languages = %v, want toy: toy 1.2.3", offer.Properties["andromeda.driver.process.languages"])
	}
	flaky := offerRuntime(offer, "flaky")
	if flaky.Status != "disabled" || !strings.Contains(flaky.Reason, "certification failed") || !strings.Contains(flaky.Reason, "server/echo") {
		t.Errorf("offer's flaky runtime = %+v, want disabled with the failed checks", flaky)
	}
	for name, want := range map[string]string{
		"missing":   "path: " + filepath.Join(rt, "bin", "nope") + " does not exist",
		"notexec":   "path: " + filepath.Join(rt, "data.txt") + " has mode -rw-r--r--: it must be executable by others",
		"directory": "path: " + filepath.Join(rt, "bin") + " is a directory",
		"escape":    `path: "../outside/toyrt" must be absolute, or relative to the descriptor's directory and inside it`,
		"typo":      `paht: unknown field`,
	} {
		r := offerRuntime(offer, name)
		if r.Status != "refused" || !strings.Contains(r.Reason, want) {
			t.Errorf("offer's %s runtime = %+v, want refused with %q", name, r, want)
		}
	}

	// listRuntimes: the driver's languages and each registered runtime,
	// disabled and refused ones with their reason.
	rts := runtimesByID(t, n)
	if w := rts["wasm"]; w.Kind != api.RuntimeDriver || !w.Enabled || !strings.HasPrefix(w.Version, "wazero ") {
		t.Errorf("runtime wasm = %+v", w)
	}
	if e := rts["process/exec"]; e.Kind != api.RuntimeDriver || !e.Enabled || e.Language != "exec" {
		t.Errorf("runtime process/exec = %+v", e)
	}
	if _, ok := rts["process/node"]; ok {
		t.Errorf("process/node listed though its toolchain is missing: %+v", rts["process/node"])
	}
	if r := rts["process/toy"]; r.Kind != api.RuntimeRegistered || !r.Enabled || r.Name != "toy" || r.Version != "1.2.3" || r.Language != "toy" {
		t.Errorf("runtime process/toy = %+v", r)
	}
	if r := rts["process/flaky"]; r.Enabled || !strings.Contains(r.Reason, "certification failed") {
		t.Errorf("runtime process/flaky = %+v, want disabled with its reason", r)
	}
	if r := rts["process/missing"]; r.Enabled || r.Kind != api.RuntimeRegistered || !strings.Contains(r.Reason, "does not exist") {
		t.Errorf("runtime process/missing = %+v, want refused with its reason", r)
	}

	t.Logf("offer checked at %v", time.Since(begin))
	// A toy service runs end to end; its self-test passes.
	if _, err := n.op.Submit(ctx, toyService(t, "hello-toy", "toy", "Hello\n")); err != nil {
		t.Fatal(err)
	}
	r, err := n.op.Fire(ctx, "hello-toy", json.RawMessage(`{"name":"Ada"}`))
	if err != nil || r.Outcome != "noop" || r.Noop != "Hello Ada" {
		t.Fatalf("fire hello-toy = %+v, %v; want noop Hello Ada", r, err)
	}
	if res, err := n.op.TestService(ctx, "hello-toy"); err != nil || !res.Ran || !res.OK {
		t.Errorf("test hello-toy = %+v, %v; want ran and ok", res, err)
	}
	// The runtime serves server mode only.
	if _, err := n.op.Submit(ctx, toyService(t, "command-toy", "toy", "Hi\n", "command")); err == nil || !strings.Contains(err.Error(), "serves [server] mode only") {
		t.Errorf("submit of a command-mode toy service = %v, want refused: server mode only", err)
	}
	// One whose self-test fails does not deploy.
	_, err = n.op.Submit(ctx, toyService(t, "failing-toy", "toy", "Hi\ntest: fail the answer is not 42\n"))
	if err == nil || !strings.Contains(err.Error(), "self-test failed") || !strings.Contains(err.Error(), "the answer is not 42") {
		t.Errorf("submit of a service whose test fails = %v, want the test's message", err)
	}

	// The broken runtime's language is refused with its reason.
	_, err = n.op.Submit(ctx, toyService(t, "flaky-svc", "flaky", "Hi\n"))
	if status(err) != 422 || !strings.Contains(err.Error(), "language flaky is disabled on this node") || !strings.Contains(err.Error(), "certification failed") {
		t.Errorf("submit for the disabled runtime = %v, want 422 naming the certification", err)
	}

	t.Logf("services checked at %v", time.Since(begin))
	// Fixed, it passes andromeda selftest and is enabled again.
	if err := os.WriteFile(filepath.Join(rt, "bin", "flaky.new"), exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(rt, "bin", "flaky.new"), filepath.Join(rt, "bin", "flaky")); err != nil {
		t.Fatal(err)
	}
	st, err := n.op.SelfTest(ctx, "wasm", "flaky")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("selftest: %+v", st)
	results := map[string]api.SelfTestResult{}
	for _, r := range append(st.Drivers, st.Runtimes...) {
		results[r.Name] = r
	}
	if len(st.Drivers) != 1 || len(st.Runtimes) != 1 {
		t.Errorf("selftest of wasm and flaky = %+v, want those two only", st)
	}
	for _, name := range []string{"wasm", "flaky"} {
		if r := results[name]; !r.OK || !r.Enabled || r.TookMS <= 0 {
			t.Errorf("selftest %s = %+v, want ok and enabled", name, r)
		}
	}
	if _, err := n.op.Submit(ctx, toyService(t, "flaky-svc", "flaky", "Hi\n")); err != nil {
		t.Errorf("submit for the runtime certified again = %v", err)
	}
	if r := runtimesByID(t, n)["process/flaky"]; !r.Enabled || r.Reason != "" {
		t.Errorf("runtime process/flaky certified again = %+v, want enabled", r)
	}
}

// runtimesByID lists n's runtimes through the API, by id; each id once.
func runtimesByID(t *testing.T, n *testNode) map[string]api.Runtime {
	t.Helper()
	rs, err := n.op.Runtimes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Runtime{}
	for _, r := range rs {
		if _, dup := out[r.ID]; dup {
			t.Errorf("runtime %s listed twice", r.ID)
		}
		out[r.ID] = r
	}
	return out
}
