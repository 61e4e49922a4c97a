package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/archive"
)

// TestDelegateCLI: a hub delegates to a reviewer with attest delegate -o,
// the reviewer adds the delegation to the service directory with --from
// and attests; policy explain counts the reviewer through the hub and shows
// the path; attest revoke signs a revocation of the delegation.
func TestDelegateCLI(t *testing.T) {
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
	keys := t.TempDir()
	hub, reviewer := filepath.Join(keys, "hub.key"), filepath.Join(keys, "reviewer.key")
	for _, k := range []string{hub, reviewer} {
		if _, _, err := runCLI(t, env, "keys", "gen", k); err != nil {
			t.Fatal(err)
		}
	}
	pub, _ := os.ReadFile(hub + ".pub")
	policyFile := filepath.Join(keys, "policy.yaml")
	os.WriteFile(policyFile, []byte("trusted_hubs:\n  - {name: hub, key: \""+strings.TrimSpace(string(pub))+"\", weight: 2}\nrequire: {weight: 1}\n"), 0o644)

	delegation := filepath.Join(keys, "reviewer.json")
	out, _, err := runCLI(t, env, "attest", "delegate", "--key", hub, "--to", reviewer+".pub", "--share", "0.5", "--scope", "greet*", "--expires", "720h", "-o", delegation)
	if err != nil || !strings.Contains(out, "delegation sha256:") {
		t.Fatalf("attest delegate -o: %v\n%s", err, out)
	}
	// A delegation changed after signing is refused and adds nothing.
	signed, _ := os.ReadFile(delegation)
	tampered := filepath.Join(keys, "tampered.json")
	os.WriteFile(tampered, []byte(strings.Replace(string(signed), `"share": 0.5`, `"share": 1`, 1)), 0o644)
	if string(signed) == strings.Replace(string(signed), `"share": 0.5`, `"share": 1`, 1) {
		t.Fatalf("no share 0.5 to tamper with in %s", signed)
	}
	if _, _, err := runCLI(t, env, "attest", "delegate", dir, "--from", tampered); err == nil || !strings.Contains(err.Error(), "signature by ") || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("attest delegate --from a tampered delegation: %v, want an error naming the signature", err)
	}
	if _, err := os.Stat(filepath.Join(dir, archive.MetaDir, "attestations.json")); err == nil {
		t.Fatal("the tampered delegation was added")
	}
	if _, _, err := runCLI(t, env, "attest", "delegate", dir, "--from", delegation); err != nil {
		t.Fatalf("attest delegate --from: %v", err)
	}
	if _, _, err := runCLI(t, env, "attest", dir, "--key", reviewer); err != nil {
		t.Fatalf("attest: %v", err)
	}
	out, _, err = runCLI(t, env, "policy", "explain", dir, "--policy", policyFile)
	if err != nil || !strings.Contains(out, "verdict: run") || !strings.Contains(out, "via hub (weight 1 = 2 × 0.5)") || !strings.Contains(out, "delegations[0]") {
		t.Fatalf("explain: %v\n%s", err, out)
	}

	// A delegation out of scope does not count, and explain says why.
	if _, _, err := runCLI(t, env, "attest", "delegate", dir, "--key", hub, "--to", reviewer+".pub", "--scope", "weather-*", "--expires", "1h"); err != nil {
		t.Fatal(err)
	}
	out, _, _ = runCLI(t, env, "policy", "explain", dir, "--policy", policyFile)
	if !strings.Contains(out, "verdict: reject") || !strings.Contains(out, "scope services [weather-*] does not include service greeter") {
		t.Fatalf("explain out of scope:\n%s", out)
	}

	out, _, err = runCLI(t, env, "attest", "revoke", delegation, "--key", hub)
	if err != nil || !strings.Contains(out, `"delegation": "sha256:`) || !strings.Contains(out, `"signature"`) {
		t.Fatalf("attest revoke: %v\n%s", err, out)
	}

	// explain --revocation judges the delegation as a node holding the
	// revocation would: the reviewer no longer counts.
	if _, _, err := runCLI(t, env, "attest", "delegate", dir, "--from", delegation); err != nil {
		t.Fatalf("attest delegate --from again: %v", err)
	}
	revocation := filepath.Join(t.TempDir(), "r.json")
	if _, _, err := runCLI(t, env, "attest", "revoke", delegation, "--key", hub, "-o", revocation); err != nil {
		t.Fatalf("attest revoke -o: %v", err)
	}
	out, _, err = runCLI(t, env, "policy", "explain", dir, "--policy", policyFile)
	if err != nil || !strings.Contains(out, "verdict: run") {
		t.Fatalf("explain without the revocation: %v\n%s", err, out)
	}
	out, _, _ = runCLI(t, env, "policy", "explain", dir, "--policy", policyFile, "--revocation", revocation)
	if !strings.Contains(out, "verdict: reject") || !strings.Contains(out, "revoked by") {
		t.Fatalf("explain --revocation:\n%s", out)
	}
	if _, _, err := runCLI(t, env, "policy", "explain", dir, "--policy", policyFile, "--revocation", policyFile); err == nil || !strings.Contains(err.Error(), "--revocation") {
		t.Fatalf("explain --revocation NOT-A-REVOCATION: %v, want an error naming the flag", err)
	}
	if _, _, err := runCLI(t, env, "attest", "delegate", "--key", hub, "--to", reviewer+".pub", "--expires", "1h", "--share", "2"); err == nil || !strings.Contains(err.Error(), "share: ") {
		t.Fatalf("share 2: %v, want an error naming share", err)
	}
}
