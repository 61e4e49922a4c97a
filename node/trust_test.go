package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/attest"
)

// TestTrustTreeRevocation: a service carrying a two-level delegation chain
// and its last delegate's attestation is admitted; a revocation posted by
// a submitter token (the hub signed it) makes the next version's same
// chain not count, and that version is refused with the reason. A
// later-dated revocation replayed changes nothing, and a submitter may not
// post a revocation by a key that is no trusted hub.
func TestTrustTreeRevocation(t *testing.T) {
	ctx := context.Background()
	hubPub, hub := attest.GenerateKey()
	_, bob := attest.GenerateKey()
	_, carol := attest.GenerateKey()
	n := startNode(t, withPolicy(t, `
trusted_hubs:
  - {name: hub, key: "`+hubPub.String()+`", weight: 1}
require: {signatures: 1, weight: 0.25}
trust: {max_depth: 2}
`))
	now := time.Now().UTC().Truncate(time.Second)
	delegate := func(from attest.PrivateKey, to attest.PublicKey, scope ...string) attest.Delegation {
		d, err := attest.Delegate(from, attest.Delegation{
			Delegate: to.String(), Share: 0.5, Scope: attest.Scope{Services: scope}, MaxDepth: 1,
			IssuedAt: now.Add(-time.Minute), Expires: now.Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	chain := []attest.Delegation{delegate(hub, bob.Public(), "greet*"), delegate(bob, carol.Public())}
	dir := example(t, "greeter")
	submit := func() (api.SubmitResult, error) {
		data := pack(t, dir)
		info, err := archive.Inspect(strings.NewReader(string(data)), archive.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		return n.op.SubmitWith(ctx, data, api.SubmitOptions{Attestations: []attest.Attestation{attest.Sign(carol, info.Digest)}, Delegations: chain})
	}
	res, err := submit()
	if err != nil {
		t.Fatalf("two-level chain, weight 0.25: %v", err)
	}
	if d := &res.Service.Decision; !hasReason(d, "attestations[0]", true, "via hub → "+bob.Public().Short()+" (weight 0.25 = 1 × 0.5 × 0.5)") {
		t.Fatalf("the counted attestation does not show its path: %+v", d.Reasons)
	}

	// A submitter may post a revocation; a tampered one is 400.
	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(n.Addr(), tok.Secret)
	p, _ := chain[1].Parse()
	r, err := attest.Revoke(hub, p.ID, now.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	tampered := r
	tampered.Delegation = "sha256:" + strings.Repeat("0", 64)
	if _, err := alice.Revoke(ctx, tampered); status(err) != 400 || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("tampered revocation: %v, want 400 naming the signature", err)
	}
	// A scheduled revocation posted first is replaced by an immediate one;
	// replaying the scheduled one afterwards changes nothing (200 with
	// the immediate one held), so it cannot un-revoke until its date.
	scheduled, err := attest.Revoke(hub, p.ID, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := postRevocation(t, n.op.Base, tok.Secret, scheduled); got.status != 201 || got.body.RevokedAt != scheduled.RevokedAt {
		t.Fatalf("scheduled revocation: %d %+v, want 201 with it", got.status, got.body)
	}
	if held, err := alice.Revoke(ctx, r); err != nil || !held.RevokedAt.Equal(r.RevokedAt) {
		t.Fatalf("revoke: %+v, %v; want the immediate one held", held, err)
	}
	if got := postRevocation(t, n.op.Base, tok.Secret, scheduled); got.status != 200 || !got.body.RevokedAt.Equal(r.RevokedAt) {
		t.Fatalf("replayed scheduled revocation: %d %+v, want 200 with the immediate one still held", got.status, got.body)
	}
	list, err := n.op.Revocations(ctx)
	if err != nil || len(list) != 1 || list[0].Delegation != p.ID || !list[0].RevokedAt.Equal(r.RevokedAt) {
		t.Fatalf("revocations = %+v, %v; want the immediate one only", list, err)
	}

	// A revocation by a key that is no trusted hub (bob revoking his own
	// delegation to carol) only the operator may post.
	byBob, err := attest.Revoke(bob, p.ID, now.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Revoke(ctx, byBob); status(err) != 403 || !strings.Contains(err.Error(), "key "+bob.Public().Short()+" is not a trusted hub: only the operator may post revocations by other keys") {
		t.Fatalf("a submitter's revocation by a delegate: %v, want 403 naming the rule", err)
	}
	if list, err := n.op.Revocations(ctx); err != nil || len(list) != 1 {
		t.Fatalf("after the refused revocation: %+v, %v; want it not stored", list, err)
	}

	setManifest(t, dir, func(s string) string { return strings.Replace(s, "version: 1.0.0", "version: 1.0.1", 1) })
	_, err = submit()
	var ae *api.Error
	if status(err) != 422 || !asAPIError(err, &ae) || !mentions(ae.Decision, "delegations[1]", "revoked by hub at") || !mentions(ae.Decision, "trusted_hubs", "require") {
		t.Fatalf("after the revocation: %v, want 422 naming the revoked delegation", err)
	}
	if got, err := n.op.Service(ctx, "greeter"); err != nil || got.Version != "1.0.0" {
		t.Fatalf("service after the refused version = %s, %v; want 1.0.0 still", got.Version, err)
	}
	// The operator may post it.
	if held, err := n.op.Revoke(ctx, byBob); err != nil || held.Key != byBob.Key {
		t.Fatalf("the operator's revocation by a delegate: %+v, %v", held, err)
	}
	if list, err := n.op.Revocations(ctx); err != nil || len(list) != 2 {
		t.Fatalf("revocations after the operator's: %+v, %v; want 2", list, err)
	}
}

// hasReason reports whether d has a reason for rule with ok whose detail
// contains word.
func hasReason(d *api.Decision, rule string, ok bool, word string) bool {
	if d == nil {
		return false
	}
	for _, r := range d.Reasons {
		if r.Rule == rule && r.OK == ok && strings.Contains(r.Detail, word) {
			return true
		}
	}
	return false
}

type posted struct {
	status int
	body   attest.Revocation
}

// postRevocation posts r to the node at base with token and returns the
// status and the revocation answered.
func postRevocation(t *testing.T, base, token string, r attest.Revocation) posted {
	t.Helper()
	b, _ := json.Marshal(r)
	req, err := http.NewRequest("POST", base+"/v1/trust/revocations", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out posted
	out.status = resp.StatusCode
	if err := json.NewDecoder(resp.Body).Decode(&out.body); err != nil {
		t.Fatalf("answer %d: %v", resp.StatusCode, err)
	}
	return out
}
