package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
	"github.com/andromeda-runner/andromeda/usage"
)

// usageServices are a wasm, a Node.js and a Python service that each report
// rows 1200 and rows 34 per run, and one bad counter (a bad name: dropped
// and counted). The wasm one is sandbox/wasm's testdata/usage.wasm.
var usageServices = map[string]struct{ runtime, file, source string }{
	"usage-wasm": {"{driver: wasm, language: wasm, entry: main.wasm}", "main.wasm", ""},
	"usage-node": {"{driver: process, language: node, entry: index.js}", "index.js",
		"exports.decide = (ctx) => { ctx.usage('rows', 1200); ctx.usage('rows', 34); ctx.usage('Bad Name', 1); return { noop: 'counted' }; };\n"},
	"usage-python": {"{driver: process, language: python, entry: main.py}", "main.py",
		"def decide(ctx):\n    ctx.usage('rows', 1200)\n    ctx.usage('rows', 34)\n    ctx.usage('Bad Name', 1)\n    return {'noop': 'counted'}\n"},
}

// TestUsageCLI runs services of every kind that report counters: each run
// record carries the sums and a usage record signed by the node key;
// andromeda usage sums them per service; andromeda usage verify accepts the
// records with the node's key and refuses a changed counter, a changed
// signature, changed totals and another key. andromeda verify usage RUN
// reads the run from the node; andromeda verify receipt checks the
// service's decision receipt, and refuses a changed verdict and another
// key.
func TestUsageCLI(t *testing.T) {
	ctx := context.Background()
	n, env := startNode(t, nil)
	tok, err := node.OperatorToken(env["ANDROMEDA_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(n.Addr(), tok)
	info, err := c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	processOK := false
	for _, d := range info.Drivers {
		processOK = processOK || d.Name == "process" && d.Enabled
	}
	nodeKey, err := attest.ParsePublicKey(info.NodeKey)
	if err != nil {
		t.Fatalf("GET /v1/node node_key %q: %v", info.NodeKey, err)
	}
	wasm, err := os.ReadFile(filepath.Join("..", "..", "sandbox", "wasm", "testdata", "usage.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range usageServices {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if strings.Contains(svc.runtime, "process") {
				sandboxtest.Require(t, processOK, "the process driver is disabled on this host")
			}
			dir := t.TempDir()
			content := []byte(svc.source)
			if svc.file == "main.wasm" {
				content = wasm
			}
			os.WriteFile(filepath.Join(dir, svc.file), content, 0o644)
			os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte("name: "+name+"\nversion: 1.0.0\nruntime: "+svc.runtime+
				"\nmode: server\ntriggers:\n  - {kind: manual}\nresources: {memory: 128Mi, timeout: 10s}\ncapabilities: {network: none}\n"), 0o644)
			if _, stderr, err := runCLI(t, env, "submit", dir); err != nil {
				t.Fatalf("submit: %v\n%s", err, stderr)
			}
			for range 2 {
				r, err := c.Fire(ctx, name, nil)
				if err != nil || r.Outcome != "noop" {
					t.Fatalf("fire = %+v, %v", r, err)
				}
				if r.Usage.Counters["rows"] != 1234 || r.Usage.CountersDropped < 1 {
					t.Fatalf("run usage = %+v", r.Usage)
				}
				if r, err = c.Run(ctx, name, r.ID); err != nil || len(r.UsageRecord) == 0 {
					t.Fatalf("run %s read back = %v, usage record %s", r.ID, err, r.UsageRecord)
				}
				rec, err := usage.Verify(r.UsageRecord, ed25519.PublicKey(nodeKey))
				if err != nil || rec.RunID != r.ID || rec.Service != name || rec.Counters["rows"] != 1234 || rec.Node != info.NodeKey || rec.Driver == "" || rec.Trigger != "manual" {
					t.Fatalf("usage record = %+v, %v", rec, err)
				}
			}

			if show, _, err := runCLI(t, env, "runs", "show", rep0(t, c, name)); err != nil || !strings.Contains(show, "rows=1234") || !strings.Contains(show, "reports dropped") {
				t.Errorf("runs show = %v\n%s", err, show)
			}

			out, stderr, err := runCLI(t, env, "usage", name, "--json")
			if err != nil {
				t.Fatalf("usage --json: %v\n%s", err, stderr)
			}
			var rep api.UsageReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			for i := range rep.Records {
				var b bytes.Buffer
				if err := json.Compact(&b, rep.Records[i]); err != nil {
					t.Fatal(err)
				}
				rep.Records[i] = b.Bytes()
			}
			if rep.Totals.Runs != 2 || rep.Totals.Counters["rows"] != 2468 || len(rep.Records) != 2 || rep.Totals.WallNS <= 0 || rep.NodeKey != info.NodeKey {
				t.Fatalf("usage totals = %+v, %d records", rep.Totals, len(rep.Records))
			}
			text, _, err := runCLI(t, env, "usage", name)
			if err != nil || !strings.Contains(text, "rows=2468") || !strings.Contains(text, "Runs:\t2") {
				t.Errorf("usage = %v\n%s", err, text)
			}

			file := filepath.Join(t.TempDir(), "usage.json")
			verify := func(body []byte, args ...string) (string, error) {
				os.WriteFile(file, body, 0o644)
				out, _, err := runCLI(t, env, append([]string{"usage", "verify", file}, args...)...)
				return out, err
			}
			if out, err := verify([]byte(out)); err != nil || !strings.Contains(out, "verified 2 usage records") {
				t.Fatalf("usage verify = %v\n%s", err, out)
			}
			if got, err := runCLIIn(t, env, out, "usage", "verify", "-"); err != nil || !strings.Contains(got, "verified 2 usage records") {
				t.Fatalf("usage verify - = %v\n%s", err, got)
			}
			if out, err := verify(rep.Records[0], "--key", info.NodeKey); err != nil || !strings.Contains(out, "verified 1 usage records") {
				t.Fatalf("usage verify one record --key = %v\n%s", err, out)
			}
			otherPub, _ := attest.GenerateKey()
			for _, bad := range []struct {
				name string
				body []byte
				args []string
				want string
			}{
				{"counter changed", bytes.Replace(rep.Records[0], []byte(`"rows":1234`), []byte(`"rows":1000`), 1), nil, "digest does not match"},
				{"signature changed", bytes.Replace(rep.Records[0], []byte(`"value":"`), []byte(`"value":"AAAA`), 1), nil, "signature"},
				{"totals changed", bytes.Replace([]byte(out), []byte(`"rows": 2468`), []byte(`"rows": 1`), 1), nil, "totals are not the sums"},
				{"another key", rep.Records[0], []string{"--key", otherPub.String()}, "another key"},
			} {
				if bytes.Equal(bad.body, rep.Records[0]) && bad.args == nil || bytes.Equal(bad.body, []byte(out)) {
					t.Fatalf("%s: the case changes nothing", bad.name)
				}
				got, err := verify(bad.body, bad.args...)
				if err == nil || !strings.Contains(got+err.Error(), bad.want) {
					t.Errorf("usage verify (%s) = %v\n%s\nwant an error with %q", bad.name, err, got, bad.want)
				}
			}

			if got, _, err := runCLI(t, env, "verify", "usage", rep0(t, c, name)); err != nil || !strings.Contains(got, "verified 1 usage records") {
				t.Errorf("verify usage RUN = %v\n%s", err, got)
			}
			if got, _, err := runCLI(t, env, "verify", "receipt", name); err != nil || !strings.Contains(got, "ok\t"+name+" 1.0.0: run, decided ") {
				t.Errorf("verify receipt %s = %v\n%s", name, err, got)
			}
			svc, err := c.Service(ctx, name)
			if err != nil || svc.Receipt == nil {
				t.Fatalf("service %s: %v, receipt %v", name, err, svc.Receipt)
			}
			receiptFile := filepath.Join(t.TempDir(), "receipt.json")
			writeJSON := func(v any) {
				b, _ := json.Marshal(v)
				os.WriteFile(receiptFile, b, 0o644)
			}
			writeJSON(svc.Receipt)
			if got, _, err := runCLI(t, env, "verify", "receipt", receiptFile, "--key", info.NodeKey); err != nil || !strings.Contains(got, "ok\t") {
				t.Errorf("verify receipt FILE --key = %v\n%s", err, got)
			}
			if _, _, err := runCLI(t, env, "verify", "receipt", receiptFile, "--key", otherPub.String()); err == nil || !strings.Contains(err.Error(), "not by the key trusted") {
				t.Errorf("verify receipt with another key = %v", err)
			}
			forged := *svc.Receipt
			forged.Verdict = "reject"
			svc.Receipt = &forged
			writeJSON(svc)
			if _, _, err := runCLI(t, env, "verify", "receipt", receiptFile); err == nil || !strings.Contains(err.Error(), "signature") {
				t.Errorf("verify receipt with a changed verdict = %v", err)
			}
		})
	}
	if _, _, err := runCLI(t, env, "usage", "usage-wasm", "--since", "soon"); err == nil || !strings.Contains(err.Error(), "since") {
		t.Errorf("usage --since soon = %v, want an error naming since", err)
	}
	if _, _, err := runCLI(t, env, "usage", "nosuch"); err == nil {
		t.Error("usage nosuch = nil error")
	}
}

// rep0 is the id of service's newest run.
func rep0(t *testing.T, c *api.Client, service string) string {
	t.Helper()
	runs, err := c.Runs(context.Background(), service, 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs of %s = %v, %v", service, runs, err)
	}
	return runs[0].ID
}
