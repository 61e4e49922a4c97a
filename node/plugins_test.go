package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// The tests below consult admission plugins on a real node: wasm command
// modules assembled here (no toolchain needed) and Python services on the
// process driver.

// wasmCommand assembles a WASI command module whose _start runs body; the
// module imports fd_write as function 0, exports its memory, and holds
// data at address 0.
func wasmCommand(body, data []byte) []byte {
	uleb := func(v int) []byte { return binary.AppendUvarint(nil, uint64(v)) }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	str := func(s string) []byte { return cat(uleb(len(s)), []byte(s)) }
	section := func(id byte, items ...[]byte) []byte {
		p := cat(append([][]byte{uleb(len(items))}, items...)...)
		return cat([]byte{id}, uleb(len(p)), p)
	}
	code := cat([]byte{0}, body) // no locals
	return cat([]byte("\x00asm\x01\x00\x00\x00"),
		section(1, []byte{0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f}, []byte{0x60, 0, 0}),
		section(2, cat(str("wasi_snapshot_preview1"), str("fd_write"), []byte{0, 0})),
		section(3, []byte{1}),
		section(5, []byte{0, 1}),
		section(7, cat(str("memory"), []byte{2, 0}), cat(str("_start"), []byte{0, 1})),
		section(10, cat(uleb(len(code)), code)),
		section(11, cat([]byte{0, 0x41, 0, 0x0b}, uleb(len(data)), data)),
	)
}

// answerWasm is a command that writes out to stdout: an iovec at 0
// pointing at the text at 16, fd_write(1, 0, 1, 8).
func answerWasm(out string) []byte {
	data := make([]byte, 16, 16+len(out))
	binary.LittleEndian.PutUint32(data[0:], 16)
	binary.LittleEndian.PutUint32(data[4:], uint32(len(out)))
	data = append(data, out...)
	return wasmCommand([]byte{0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, 0x0b}, data)
}

// trapWasm is a command whose _start traps (unreachable).
func trapWasm() []byte { return wasmCommand([]byte{0x00, 0x0b}, nil) }

// wasmService writes a wasm command service holding module.
func wasmService(t testing.TB, name, extra string, module []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.wasm"), module, 0o644); err != nil {
		t.Fatal(err)
	}
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: main.wasm}\nmode: command\n" +
		"triggers:\n  - {kind: manual}\ncapabilities: {network: none}\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pluginPolicy is the tests' policy: memory at most 256Mi (clamped), no
// service named forbidden, then the plugin rules.
func pluginPolicy(t testing.TB, rules ...policy.Rule) policy.Policy {
	t.Helper()
	p := policy.DefaultPolicy()
	p.Limits.Memory.Max, _ = manifest.ParseBytes("256Mi")
	p.Rules = append([]policy.Rule{{Name: "not-forbidden", Expr: `service.name != "forbidden"`, Message: "no service named forbidden"}}, rules...)
	return p
}

func pluginRule(name, service, digest, timeout string) policy.Rule {
	r := policy.Rule{Name: name, Service: service, Digest: digest}
	if timeout != "" {
		r.Timeout, _ = manifest.ParseDuration(timeout)
	}
	return r
}

// refusal is the admission refusal of err, or a fatal error.
func refusal(t *testing.T, err error) *api.Error {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Decision == nil {
		t.Fatalf("err = %v, want an admission refusal", err)
	}
	return ae
}

func reasonFor(d *api.Decision, rule string) (api.Reason, bool) {
	for _, r := range d.Reasons {
		if r.Rule == rule {
			return r, true
		}
	}
	return api.Reason{}, false
}

func TestAdmissionPluginWasm(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	submit := func(c *api.Client, dir string) (api.Service, error) {
		t.Helper()
		res, err := c.Submit(ctx, pack(t, dir))
		return res.Service, err
	}
	// The plugins, submitted by the operator before any rule names them.
	plugins := map[string]string{
		"narrow":  `{"http": {"body": {"verdict": "run", "reasons": ["within budget"], "limits": {"memory": "64Mi", "pids": 8}}}}`,
		"widen":   `{"http": {"body": {"verdict": "run", "limits": {"memory": "4Gi"}}}}`,
		"reject":  `{"http": {"body": {"verdict": "reject", "reasons": ["budget spent for today"]}}}`,
		"bad":     `{"http": {"body": {"verdict": "maybe"}}}`,
		"silent":  `{"noop": "nothing to say"}`,
		"notjson": `{"http": {"body": "certainly not json"}}`,
	}
	digest := map[string]string{}
	for name, out := range plugins {
		svc, err := submit(n.op, wasmService(t, "admission-"+name, "resources: {memory: 16Mi, timeout: 5s}\n", answerWasm(out)))
		if err != nil {
			t.Fatalf("submit plugin %s: %v", name, err)
		}
		digest[name] = svc.Digest
	}
	trap, err := submit(n.op, wasmService(t, "admission-trap", "", trapWasm()))
	if err != nil {
		t.Fatal(err)
	}
	spin, err := submit(n.op, spinService(t, "admission-spin", true))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(n.Addr(), tok.Secret)
	theirs, err := submit(alice, wasmService(t, "admission-theirs", "", answerWasm(plugins["narrow"])))
	if err != nil {
		t.Fatal(err)
	}

	target := func(name, memory string) string {
		return wasmService(t, name, "resources: {memory: "+memory+", timeout: 5s}\n", answerWasm(`{"noop": "a target"}`))
	}
	runsOf := func(service string) []api.Run {
		t.Helper()
		runs, err := n.op.Runs(ctx, service, 100)
		if err != nil {
			t.Fatal(err)
		}
		return runs
	}
	use := func(rules ...policy.Rule) {
		t.Helper()
		if err := n.ReloadPolicy(pluginPolicy(t, rules...)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("narrows", func(t *testing.T) {
		use(pluginRule("budget", "admission-narrow", digest["narrow"], ""))
		svc, err := submit(alice, target("narrowed", "128Mi"))
		if err != nil {
			t.Fatal(err)
		}
		if got := svc.Decision.Limits; got.Memory != 64<<20 || got.Pids != 8 {
			t.Errorf("limits = %+v, want memory 64Mi and pids 8 as the plugin answered", got)
		}
		r, _ := reasonFor(&svc.Decision, "rules.budget")
		if !r.OK || !strings.Contains(r.Detail, "within budget; memory narrowed to 64Mi (the built-in rules allow 128Mi)") {
			t.Errorf("rules.budget = %+v", r)
		}
		// The consultation is a run like any other, with the submission as
		// its message.
		runs := runsOf("admission-narrow")
		if len(runs) != 1 || runs[0].Trigger.Kind != "admission" || runs[0].Outcome != "noop" {
			t.Fatalf("plugin runs = %+v", runs)
		}
	})

	t.Run("never widens", func(t *testing.T) {
		use(pluginRule("budget", "admission-widen", digest["widen"], ""))
		svc, err := submit(alice, target("clamped", "1Gi"))
		if err != nil {
			t.Fatal(err)
		}
		if got := svc.Decision.Limits.Memory; got != 256<<20 {
			t.Errorf("memory = %d, want the 256Mi ceiling", got)
		}
		if r, _ := reasonFor(&svc.Decision, "rules.budget"); !strings.Contains(r.Detail, "memory 4Gi clamped to 256Mi: a plugin narrows what the built-in rules allow, never widens it") {
			t.Errorf("rules.budget = %+v", r)
		}
	})

	t.Run("run does not admit what a built-in rule refuses", func(t *testing.T) {
		use(pluginRule("budget", "admission-narrow", digest["narrow"], ""))
		before := len(runsOf("admission-narrow"))
		_, err := submit(alice, target("forbidden", "16Mi"))
		ae := refusal(t, err)
		if r, _ := reasonFor(ae.Decision, "rules.not-forbidden"); r.OK {
			t.Errorf("rules.not-forbidden = %+v, want failed", r)
		}
		if got := len(runsOf("admission-narrow")); got != before {
			t.Errorf("plugin ran %d times for a service the built-in rules refuse", got-before)
		}
		if _, err := n.op.Service(ctx, "forbidden"); status(err) != 404 {
			t.Errorf("refused service stored: %v", err)
		}
	})

	for _, tc := range []struct {
		name string
		rule policy.Rule
		want string
	}{
		{"rejects", pluginRule("budget", "admission-reject", digest["reject"], ""), "rules.budget: plugin admission-reject rejects: budget spent for today"},
		{"answers badly", pluginRule("budget", "admission-bad", digest["bad"], ""), `answered badly: verdict: must be run or reject, not "maybe"`},
		{"answers no json", pluginRule("budget", "admission-notjson", digest["notjson"], ""), "answered badly: json syntax"},
		{"answers nothing", pluginRule("budget", "admission-silent", digest["silent"], ""), "gave no answer: an admission plugin answers {verdict, reasons, limits} as its output's http.body"},
		{"traps", pluginRule("budget", "admission-trap", trap.Digest, ""), "ended crashed"},
		{"times out", pluginRule("budget", "admission-spin", spin.Digest, "300ms"), "timed out (the rule allows 300ms)"},
		{"wrong digest", pluginRule("budget", "admission-narrow", digest["widen"], ""), "service admission-narrow has digest sha256:"},
		{"not the operators", pluginRule("budget", "admission-theirs", theirs.Digest, ""), "service admission-theirs belongs to alice, not the operator"},
		{"missing", pluginRule("budget", "admission-nowhere", digest["narrow"], ""), "service admission-nowhere is not admitted on this node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			use(tc.rule)
			_, err := submit(alice, target("refused-"+strings.ReplaceAll(tc.name, " ", "-"), "16Mi"))
			ae := refusal(t, err)
			if ae.Status != 403 && ae.Status != 422 {
				t.Errorf("status = %d", ae.Status)
			}
			if !strings.Contains(strings.Join(ae.Problems, "\n"), tc.want) {
				t.Errorf("problems = %q, want one containing %q", ae.Problems, tc.want)
			}
		})
	}

	t.Run("a submitter cannot take a plugin's name", func(t *testing.T) {
		use(pluginRule("budget", "admission-narrow", digest["narrow"], ""))
		_, err := submit(alice, wasmService(t, "admission-narrow", "", answerWasm(`{"http": {"body": {"verdict": "run"}}}`)))
		if status(err) != 403 || !strings.Contains(err.Error(), "service admission-narrow has another owner") {
			t.Fatalf("err = %v, want 403: the plugin service is the operator's", err)
		}
		svc, err := n.op.Service(ctx, "admission-narrow")
		if err != nil || svc.Digest != digest["narrow"] {
			t.Fatalf("plugin service = %+v, %v", svc, err)
		}
	})

	t.Run("the operator bootstraps a pinned plugin", func(t *testing.T) {
		dir := wasmService(t, "admission-new", "resources: {memory: 16Mi, timeout: 5s}\n", answerWasm(plugins["narrow"]))
		d := digestOf(t, dir)
		use(pluginRule("budget", "admission-new", d, ""))
		// A submitter cannot be first with it: the plugin it would be is
		// not there to judge it.
		if _, err := submit(alice, dir); err == nil || !strings.Contains(err.Error(), "service admission-new is not admitted on this node") {
			t.Fatalf("a submitter's copy of the plugin: %v, want refused", err)
		}
		svc, err := submit(n.op, dir)
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := reasonFor(&svc.Decision, "rules.budget"); !r.OK || !strings.Contains(r.Detail, "not consulted: the operator submits admission plugin admission-new") {
			t.Errorf("rules.budget = %+v", r)
		}
		if svc.Owner != "operator" {
			t.Errorf("owner = %q", svc.Owner)
		}
		// It judges the next submission.
		if _, err := submit(alice, wasmService(t, "other-new", "", answerWasm(plugins["narrow"]))); err != nil {
			t.Errorf("a submission judged by the bootstrapped plugin: %v", err)
		}
	})
}

// digestOf is the archive digest dir packs to.
func digestOf(t *testing.T, dir string) string {
	t.Helper()
	info, err := archive.Inspect(bytes.NewReader(pack(t, dir)), archive.Limits{MaxCompressed: 1 << 30, MaxSize: 1 << 30, MaxFileSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	return info.Digest
}

// pythonPlugin writes a Python admission plugin service whose handler is
// body.
func pythonPlugin(t *testing.T, name, body string) string {
	t.Helper()
	dir := t.TempDir()
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: command\n" +
		"triggers:\n  - {kind: manual}\nresources: {memory: 128Mi, timeout: 10s, pids: 16}\ncapabilities: {network: none}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.py"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// budgetPy reads the submission: it refuses services with the keyword
// mining, naming the submitter, and grants the rest half of the memory the
// built-in rules allow.
const budgetPy = `
def handle(input):
    sub = input["message"]
    m = sub["manifest"]
    if "mining" in (m.get("keywords") or []):
        return {"http": {"body": {"verdict": "reject", "reasons": ["no mining services from %s" % sub["submitter"]]}}}
    half = sub["decision_so_far"]["limits"]["memory_bytes"] // 2
    return {"http": {"body": {"verdict": "run", "reasons": ["half of what %s may have" % m["name"]], "limits": {"memory": str(half)}}}}
`

func TestAdmissionPluginPython(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	var enabled bool
	var why string
	for _, d := range n.Node.Node(ctx).Drivers {
		if d.Name == "process" {
			enabled, why = d.Enabled, d.Reason
		}
	}
	sandboxtest.Require(t, enabled, "the process driver is disabled on this host: "+why)

	budget, err := n.op.Submit(ctx, pack(t, pythonPlugin(t, "admission-py", budgetPy)))
	if err != nil {
		t.Fatal(err)
	}
	crash, err := n.op.Submit(ctx, pack(t, pythonPlugin(t, "admission-py-crash", "def handle(input):\n    raise RuntimeError('the budget ledger is gone')\n")))
	if err != nil {
		t.Fatal(err)
	}
	slow, err := n.op.Submit(ctx, pack(t, pythonPlugin(t, "admission-py-slow", "import time\n\ndef handle(input):\n    time.sleep(30)\n")))
	if err != nil {
		t.Fatal(err)
	}
	bare, err := n.op.Submit(ctx, pack(t, pythonPlugin(t, "admission-py-bare", "def handle(input):\n    return {'verdict': 'run'}\n")))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(n.Addr(), tok.Secret)
	target := func(name, extra string) []byte {
		return pack(t, wasmService(t, name, "resources: {memory: 200Mi, timeout: 5s}\n"+extra, answerWasm(`{"noop": "a target"}`)))
	}
	use := func(rules ...policy.Rule) {
		t.Helper()
		if err := n.ReloadPolicy(pluginPolicy(t, rules...)); err != nil {
			t.Fatal(err)
		}
	}

	use(pluginRule("budget", "admission-py", budget.Service.Digest, "10s"))
	res, err := alice.Submit(ctx, target("halved", ""))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Service.Decision.Limits.Memory; got != 100<<20 {
		t.Errorf("memory = %d, want 100Mi: half of the 200Mi the built-in rules allow", got)
	}
	if r, _ := reasonFor(&res.Service.Decision, "rules.budget"); !strings.Contains(r.Detail, "half of what halved may have; memory narrowed to 104857600 bytes") {
		t.Errorf("rules.budget = %+v", r)
	}
	_, err = alice.Submit(ctx, target("miner", "keywords: [mining]\n"))
	if ae := refusal(t, err); !strings.Contains(strings.Join(ae.Problems, "\n"), "rules.budget: plugin admission-py rejects: no mining services from alice") {
		t.Errorf("problems = %q", ae.Problems)
	}
	for _, tc := range []struct {
		name string
		rule policy.Rule
		want string
	}{
		{"crash", pluginRule("budget", "admission-py-crash", crash.Service.Digest, "10s"), "ended crashed: the budget ledger is gone …"},
		{"timeout", pluginRule("budget", "admission-py-slow", slow.Service.Digest, "1s"), "timed out (the rule allows 1s)"},
		{"wrong digest", pluginRule("budget", "admission-py", crash.Service.Digest, ""), "service admission-py has digest"},
		{"answer outside http.body", pluginRule("budget", "admission-py-bare", bare.Service.Digest, "10s"), `unknown field "verdict" (an admission plugin answers inside its output's http.body`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			use(tc.rule)
			_, err := alice.Submit(ctx, target("py-"+strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "-"), ".", "-"), ""))
			if ae := refusal(t, err); !strings.Contains(strings.Join(ae.Problems, "\n"), tc.want) {
				t.Errorf("problems = %q, want one containing %q", ae.Problems, tc.want)
			}
		})
	}
}
