package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
)

// withPolicy sets the node's policy from YAML.
func withPolicy(t testing.TB, y string) func(*node.Config) {
	t.Helper()
	p, err := policy.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return func(c *node.Config) { c.Policy = p }
}

func setManifest(t testing.TB, dir string, edit func(string) string) {
	t.Helper()
	path := filepath.Join(dir, "andromeda.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte(edit(string(b))), 0o644)
}

func TestAttestationQuorum(t *testing.T) {
	ctx := context.Background()
	pubA, privA := attest.GenerateKey()
	pubB, privB := attest.GenerateKey()
	_, stranger := attest.GenerateKey()
	n := startNode(t, withPolicy(t, `
trusted_hubs:
  - {name: a, key: "`+pubA.String()+`", weight: 2}
  - {name: b, key: "`+pubB.String()+`"}
require: {signatures: 2, weight: 3}
`))
	dir := example(t, "greeter")
	data := pack(t, dir)
	info, err := archive.Inspect(strings.NewReader(string(data)), archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshotData(t, n)
	// One trusted signer, a stranger, and a repeat: the quorum is not met.
	weak := api.SubmitOptions{Attestations: []attest.Attestation{attest.Sign(privA, info.Digest), attest.Sign(privA, info.Digest), attest.Sign(stranger, info.Digest)}}
	_, err = n.op.SubmitWith(ctx, data, weak)
	var ae *api.Error
	if status(err) != 422 || !asAPIError(err, &ae) || ae.Decision == nil || ae.Decision.Verdict != "reject" {
		t.Fatalf("weak quorum: %v", err)
	}
	if !strings.Contains(err.Error(), "trusted_hubs") {
		t.Fatalf("refusal does not name the quorum rule: %v", err)
	}
	if after := snapshotData(t, n); after != before {
		t.Fatalf("a refused service changed the data dir:\n%s\n%s", before, after)
	}
	// A signature over another digest does not count either.
	other := api.SubmitOptions{Attestations: []attest.Attestation{attest.Sign(privA, info.Digest), attest.Sign(privB, "sha256:"+strings.Repeat("0", 64))}}
	if _, err := n.op.SubmitWith(ctx, data, other); status(err) != 422 {
		t.Fatalf("signature over another digest counted: %v", err)
	}
	// Bad headers are 400.
	bad := api.SubmitOptions{Attestations: []attest.Attestation{{Key: pubA.String(), Digest: info.Digest, Signature: "%%%not-base64"}}}
	// (the header is well formed; the signature inside it is not base64,
	// so admission says why it does not count)
	if _, err := n.op.SubmitWith(ctx, data, bad); status(err) != 422 || !asAPIError(err, &ae) || !mentions(ae.Decision, "attestations[0]", "base64") {
		t.Fatalf("malformed signature: %v", err)
	}
	good := api.SubmitOptions{Attestations: []attest.Attestation{attest.Sign(privA, info.Digest), attest.Sign(privB, info.Digest)}}
	res, err := n.op.SubmitWith(ctx, data, good)
	if err != nil {
		t.Fatalf("quorum met: %v", err)
	}
	// The receipt is signed by the node key over this policy and digest.
	r := res.Service.Receipt
	pi, err := n.op.Policy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r == nil || attest.VerifyReceipt(*r) != nil || r.NodeKey != pi.NodeKey || r.PolicyDigest != pi.Digest || r.ServiceDigest != info.Digest || r.Verdict != "run" {
		t.Fatalf("receipt = %+v (policy %s, node key %s)", r, pi.Digest, pi.NodeKey)
	}
	tampered := *r
	tampered.Verdict = "reject"
	if attest.VerifyReceipt(tampered) == nil {
		t.Fatal("a tampered receipt verifies")
	}
}

// mentions reports whether the decision has a failed reason for rule whose
// detail contains word.
func mentions(d *api.Decision, rule, word string) bool {
	if d == nil {
		return false
	}
	for _, r := range d.Reasons {
		if r.Rule == rule && !r.OK && strings.Contains(r.Detail, word) {
			return true
		}
	}
	return false
}

func asAPIError(err error, ae **api.Error) bool {
	e, ok := err.(*api.Error)
	*ae = e
	return ok
}

func TestPolicyReloadKeepsPreviousOnError(t *testing.T) {
	n := startNode(t, withPolicy(t, "keywords: [demo]\n"))
	before := n.Policy().Digest()
	bad := n.Policy().Policy()
	bad.Rules = []policy.Rule{{Name: "broken", Expr: "service.name ==", Message: "x"}}
	if err := n.ReloadPolicy(bad); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("ReloadPolicy(broken rule) = %v", err)
	}
	if got := n.Policy().Digest(); got != before {
		t.Fatalf("policy changed after a failed reload: %s → %s", before, got)
	}
	good := n.Policy().Policy()
	good.Keywords = []string{"other"}
	if err := n.ReloadPolicy(good); err != nil {
		t.Fatal(err)
	}
	if n.Policy().Digest() == before {
		t.Fatal("a good reload did not change the policy")
	}
	// The new policy decides the next submission: greeter has keyword demo.
	if _, err := n.op.Submit(context.Background(), pack(t, example(t, "greeter"))); status(err) != 422 || !strings.Contains(err.Error(), "keywords") {
		t.Fatalf("submit under reloaded policy: %v", err)
	}
}

func TestUpgradeGrowth(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, withPolicy(t, "upgrade: {growth: reject}\n"))
	dir := example(t, "greeter")
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	setManifest(t, dir, func(s string) string {
		s = strings.Replace(s, "version: 1.0.0", "version: 1.1.0", 1)
		s = strings.Replace(s, "memory: 16Mi", "memory: 48Mi", 1)
		return strings.Replace(s, "actions: [emit]", "actions: [emit, http]", 1)
	})
	_, err := n.op.Submit(ctx, pack(t, dir))
	var ae *api.Error
	if status(err) != 422 || !asAPIError(err, &ae) || len(ae.Decision.Growth) < 2 {
		t.Fatalf("upgrade with growth: %v", err)
	}
	whats := map[string]bool{}
	for _, g := range ae.Decision.Growth {
		whats[g.What] = true
	}
	if len(ae.Decision.Growth) != 2 || !whats["memory"] || !whats["action"] {
		t.Fatalf("growth = %+v, want exactly memory and the new action", ae.Decision.Growth)
	}
	svc, _ := n.op.Service(ctx, "greeter")
	if svc.Version != "1.0.0" {
		t.Fatalf("the refused upgrade replaced the running version: %s", svc.Version)
	}
}

func TestDormant(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, withPolicy(t, "dormant: {services: [greet*]}\n"))
	res, err := n.op.Submit(ctx, pack(t, example(t, "greeter")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Service.Status != "dormant" || !res.Service.Decision.Dormant {
		t.Fatalf("status = %s, decision %+v", res.Service.Status, res.Service.Decision)
	}
	run, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"late"}`))
	if err != nil || run.Outcome != "ok" {
		t.Fatalf("first fire of a dormant service = %+v, %v", run, err)
	}
	svc, _ := n.op.Service(ctx, "greeter")
	if svc.Status != "deployed" {
		t.Fatalf("after its first trigger status = %s", svc.Status)
	}
}

// TestSourceFetch submits a manifest whose source.location the node fetches
// over HTTPS, through the API and through the seed's POST /service.
func TestSourceFetch(t *testing.T) {
	ctx := context.Background()
	dir := example(t, "greeter")
	data := pack(t, dir)
	info, _ := archive.Inspect(strings.NewReader(string(data)), archive.Limits{})
	seedDir := example(t, "greeter")
	setManifest(t, seedDir, func(s string) string { return strings.Replace(s, "name: greeter", "name: greeter-seed", 1) })
	seedData := pack(t, seedDir)
	seedInfo, _ := archive.Inspect(strings.NewReader(string(seedData)), archive.Limits{})
	var hits int
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		switch r.URL.Path {
		case "/greeter.tar.gz":
			w.Write(data)
		case "/seed.tar.gz":
			w.Write(seedData)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	n := startNode(t, withPolicy(t, "allowed_sources: [\""+u.Host+"\"]\n"), func(c *node.Config) { c.SeedEndpoint.Anonymous = true })
	n.SetHTTPClient(srv.Client())

	var m map[string]any
	y, _ := os.ReadFile(filepath.Join(dir, "andromeda.yaml"))
	yaml.Unmarshal(y, &m)
	m["source"] = map[string]any{"location": srv.URL + "/greeter.tar.gz", "digest": info.Digest}
	body, _ := json.Marshal(m)
	res, err := n.op.SubmitSource(ctx, body, api.SubmitOptions{})
	if err != nil || res.Service.Digest != info.Digest {
		t.Fatalf("SubmitSource = %+v, %v", res.Service, err)
	}
	// A wrong digest is refused after the fetch, and nothing changes.
	m["version"] = "1.0.1"
	m["source"] = map[string]any{"location": srv.URL + "/greeter.tar.gz", "digest": "sha256:" + strings.Repeat("a", 64)}
	body, _ = json.Marshal(m)
	if _, err := n.op.SubmitSource(ctx, body, api.SubmitOptions{}); status(err) != 422 || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("wrong digest: %v", err)
	}
	// A host outside allowed_sources is refused before anything is fetched.
	hitsBefore := hits
	m["source"] = map[string]any{"location": "https://elsewhere.invalid/x.tar.gz", "digest": info.Digest}
	body, _ = json.Marshal(m)
	if _, err := n.op.SubmitSource(ctx, body, api.SubmitOptions{}); status(err) != 422 || hits != hitsBefore {
		t.Fatalf("disallowed source: %v (fetches %d → %d)", err, hitsBefore, hits)
	}

	// The seed's endpoint answers OK or ERR.
	post := func(b []byte) (int, string, string) {
		resp, err := http.Post(n.URL()+"/service", "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out), resp.Header.Get("Andromeda-Reason")
	}
	m["name"] = "greeter-seed"
	m["version"] = "1.0.0"
	m["source"] = map[string]any{"location": srv.URL + "/greeter.tar.gz", "digest": info.Digest}
	body, _ = json.Marshal(m)
	// The archive holds greeter, not greeter-seed: ERR with the reason.
	if code, out, reason := post(body); out != "ERR" || code != 422 || !strings.Contains(reason, "holds greeter") {
		t.Fatalf("POST /service mismatched = %d %q %q", code, out, reason)
	}
	if code, out, _ := post([]byte("{not json")); out != "ERR" || code != 400 {
		t.Fatalf("POST /service bad JSON = %d %q", code, out)
	}
	m["source"] = map[string]any{"location": srv.URL + "/seed.tar.gz", "digest": seedInfo.Digest}
	body, _ = json.Marshal(m)
	if code, out, reason := post(body); out != "OK" || code != 200 {
		t.Fatalf("POST /service = %d %q %q", code, out, reason)
	}
	svc, err := n.op.Service(ctx, "greeter-seed")
	if err != nil || svc.Owner != "anonymous" || svc.Status != "deployed" {
		t.Fatalf("seed-submitted service = %+v, %v", svc, err)
	}
}
