package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
)

// trustCase is a submission of service weather-eu (keyword geo) under a
// policy trusting hub-a (weight 1) and hub-b (weight 2).
type trustCase struct {
	t       *testing.T
	depth   int // trust.max_depth
	require Quorum
	dels    []attest.Delegation
	atts    []attest.Attestation
	revoked map[string][]attest.Revocation
	name    string
}

func newTrustCase(t *testing.T) *trustCase {
	return &trustCase{t: t, depth: DefaultTrustDepth, name: "weather-eu"}
}

// delegate adds from's delegation to to with share and options.
func (c *trustCase) delegate(from, to string, share float64, opt ...func(*attest.Delegation)) attest.ParsedDelegation {
	c.t.Helper()
	d := attest.Delegation{
		Delegate: testKey(to).Public().String(), Share: share, MaxDepth: 2,
		IssuedAt: testNow.Add(-time.Hour), Expires: testNow.Add(24 * time.Hour),
	}
	for _, o := range opt {
		o(&d)
	}
	d, err := attest.Delegate(testKey(from), d)
	if err != nil {
		c.t.Fatal(err)
	}
	c.dels = append(c.dels, d)
	p, _ := d.Parse()
	return p
}

func (c *trustCase) sign(by ...string) {
	for _, b := range by {
		c.atts = append(c.atts, attest.SignAt(testKey(b), digestA, testNow.Add(-time.Minute)))
	}
}

func (c *trustCase) admit() Decision {
	c.t.Helper()
	p := DefaultPolicy()
	p.TrustedHubs = []Hub{
		{Name: "hub-a", Key: testKey("hub-a").Public().String(), Weight: 1},
		{Name: "hub-b", Key: testKey("hub-b").Public().String(), Weight: 2},
	}
	p.Trust.MaxDepth = c.depth
	p.Require = c.require
	pol, err := Compile(p)
	if err != nil {
		c.t.Fatal(err)
	}
	m, err := manifest.Check([]byte("name: "+c.name+"\nversion: 1.0.0\nkeywords: [geo]\nruntime: {driver: wasm, language: go, entry: main.wasm}\n"), manifest.YAML)
	if err != nil {
		c.t.Fatal(err)
	}
	node := testNode()
	node.Revoked = c.revoked
	return pol.Admit(Submission{Manifest: m, Digest: digestA, PayloadSize: 4096, Attestations: c.atts, Delegations: c.dels}, node)
}

// reason returns the detail of rule in d, failing the test when it is not
// there with ok.
func reason(t *testing.T, d Decision, rule string, ok bool) string {
	t.Helper()
	for _, r := range d.Reasons {
		if r.Rule == rule {
			if r.OK != ok {
				t.Fatalf("%s: ok %v, want %v: %s", rule, r.OK, ok, r.Detail)
			}
			return r.Detail
		}
	}
	t.Fatalf("no reason %s in %+v", rule, d.Reasons)
	return ""
}

func wantContains(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s = %q, want it to contain %q", what, got, w)
		}
	}
}

func short(name string) string { return testKey(name).Public().Short() }

func TestTrustTwoLevelsReachQuorum(t *testing.T) {
	// hub-b (weight 2) signs itself; dave, two levels below hub-a, adds
	// the signature of a second hub's tree and the weight 0.25 the quorum
	// still lacks.
	c := newTrustCase(t)
	c.require = Quorum{Signatures: 2, Weight: 2.25}
	c.delegate("hub-a", "carol", 0.5)
	c.delegate("carol", "dave", 0.5)
	c.sign("hub-b", "dave")
	d := c.admit()
	if d.Verdict != Run {
		t.Fatalf("verdict %s, want run: %+v", d.Verdict, d.Reasons)
	}
	wantContains(t, "delegations[1]", reason(t, d, "delegations[1]", true), "hub-a → "+short("carol")+" → "+short("dave"), "weight 0.25 = 1 × 0.5 × 0.5")
	wantContains(t, "attestations[1]", reason(t, d, "attestations[1]", true),
		"counted: "+short("dave")+" via hub-a → "+short("carol")+" (weight 0.25 = 1 × 0.5 × 0.5)")
	wantContains(t, "trusted_hubs", reason(t, d, "trusted_hubs", true),
		"2 trusted signers (hub-b, "+short("dave")+"), weight 2.25; require 2 signatures (trusted hubs), weight 2.25")

	// Without the delegations the same attestations count only hub-b's.
	c.dels = nil
	d = c.admit()
	if d.Verdict == Run {
		t.Fatalf("verdict run without delegations")
	}
	wantContains(t, "attestations[1]", reason(t, d, "attestations[1]", false), "is not a trusted hub")
	wantContains(t, "trusted_hubs", reason(t, d, "trusted_hubs", false), "1 trusted signer (hub-b), weight 2;")
}

// One hub delegating to keys it controls is still one voice: its
// delegates add signers but not signatures toward the quorum.
func TestTrustOneHubsDelegatesAreOneSignature(t *testing.T) {
	c := newTrustCase(t)
	c.require = Quorum{Signatures: 2}
	c.delegate("hub-b", "bob", 0.25)
	c.delegate("hub-b", "carol", 0.25)
	c.delegate("hub-b", "dave", 0.25)
	c.sign("bob", "carol", "dave")
	d := c.admit()
	if d.Verdict == Run {
		t.Fatalf("one hub's three delegates met require.signatures 2: %+v", d.Reasons)
	}
	wantContains(t, "trusted_hubs", reason(t, d, "trusted_hubs", false),
		"3 trusted signers ("+short("bob")+", "+short("carol")+", "+short("dave")+") from 1 trusted hub, weight 1.5; require 2 signatures (trusted hubs), weight 0")

	// Every delegate still counts as a signer for rules; a second hub's
	// own attestation makes the second signature.
	c.sign("hub-a")
	if d := c.admit(); d.Verdict != Run {
		t.Fatalf("verdict %s with hub-a and hub-b's tree: %+v", d.Verdict, d.Reasons)
	}
}

// A delegate whose weight rounds to 0 says so, not that its hub's weight
// is reached.
func TestTrustShareTooSmall(t *testing.T) {
	c := newTrustCase(t)
	c.require = Quorum{Weight: 0.5}
	c.delegate("hub-a", "carol", 1e-13)
	c.sign("carol")
	d := c.admit()
	got := reason(t, d, "attestations[0]", false)
	wantContains(t, "attestations[0]", got, "share is too small, the weight rounds to 0")
	if strings.Contains(got, "reached already") {
		t.Errorf("attestations[0] = %q: hub-a's weight is not reached", got)
	}
}

func TestTrustDelegationsThatDoNotCount(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(c *trustCase)
		want  string
	}{
		{"expired", func(c *trustCase) {
			c.delegate("hub-a", "carol", 0.5, func(d *attest.Delegation) { d.Expires = testNow.Add(-time.Minute) })
		}, "not counted: expired at 2025-06-02T09:59:00Z"},
		{"revoked by its parent", func(c *trustCase) {
			p := c.delegate("hub-a", "carol", 0.5)
			r, _ := attest.Revoke(testKey("hub-a"), p.ID, testNow.Add(-time.Minute))
			c.revoked = map[string][]attest.Revocation{p.ID: {r}}
		}, "not counted: revoked by hub-a at 2025-06-02T09:59:00Z"},
		{"beyond the policy's max depth", func(c *trustCase) {
			c.depth = 1
			c.delegate("hub-a", "bob", 0.5)
			c.delegate("bob", "carol", 0.5)
		}, "not counted: beyond trust.max_depth 1 (" + short("bob") + " is at depth 1)"},
		{"beyond its parent's max depth", func(c *trustCase) {
			c.delegate("hub-a", "bob", 0.5, func(d *attest.Delegation) { d.MaxDepth = 0 })
			c.delegate("bob", "carol", 0.5)
		}, "not counted: beyond max_depth 0 of delegations[0] (" + short("bob") + " is at depth 1)"},
		{"out of scope", func(c *trustCase) {
			c.delegate("hub-a", "carol", 0.5, func(d *attest.Delegation) { d.Scope.Services = []string{"x-*"} })
		}, "not counted: scope services [x-*] does not include service weather-eu"},
		{"keyword out of scope", func(c *trustCase) {
			c.delegate("hub-a", "carol", 0.5, func(d *attest.Delegation) { d.Scope.Keywords = []string{"defi"} })
		}, "not counted: scope keywords [defi] does not include any keyword of service weather-eu (geo)"},
		{"parent not in the tree", func(c *trustCase) {
			c.delegate("mallory", "carol", 1)
		}, "not counted: parent " + short("mallory") + " is not a trusted hub or a delegate in the trust tree"},
		{"signature", func(c *trustCase) {
			c.delegate("hub-a", "carol", 0.5)
			c.dels[0].Share = 1
		}, "not counted: signature by " + short("hub-a") + " does not verify"},
		{"no delegation followed", func(c *trustCase) {
			c.depth = 0
			c.delegate("hub-a", "carol", 0.5)
		}, "not counted: trust.max_depth is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTrustCase(t)
			c.require = Quorum{Weight: 0.25}
			tc.setup(c)
			c.sign("carol")
			d := c.admit()
			if d.Verdict == Run {
				t.Fatalf("verdict run: carol's attestation counted: %+v", d.Reasons)
			}
			last := "delegations[" + itoa(len(c.dels)-1) + "]"
			wantContains(t, last, reason(t, d, last, false), tc.want)
			wantContains(t, "attestations[0]", reason(t, d, "attestations[0]", false), "not counted: key "+short("carol")+" is not a trusted hub")
		})
	}
}

func TestTrustScopeNarrowsDownTheChain(t *testing.T) {
	c := newTrustCase(t)
	c.require = Quorum{Signatures: 1}
	c.delegate("hub-a", "bob", 1, func(d *attest.Delegation) { d.Scope.Services = []string{"maps-*"} })
	c.delegate("bob", "carol", 1) // empty scope: no wider than bob's
	c.sign("carol")
	d := c.admit()
	if d.Verdict == Run {
		t.Fatal("a delegate counted outside its parent's scope")
	}
	wantContains(t, "delegations[1]", reason(t, d, "delegations[1]", false), "parent "+short("bob")+" is not a trusted hub or a delegate")
}

func TestTrustRevocationAuthority(t *testing.T) {
	c := newTrustCase(t)
	c.require = Quorum{Weight: 0.25}
	c.delegate("hub-a", "bob", 0.5)
	p := c.delegate("bob", "carol", 0.5)
	c.sign("carol")
	// A key outside the chain cannot revoke; a revocation dated later
	// has not taken effect; the root above the parent can.
	other, _ := attest.Revoke(testKey("mallory"), p.ID, testNow.Add(-time.Hour))
	later, _ := attest.Revoke(testKey("bob"), p.ID, testNow.Add(time.Hour))
	c.revoked = map[string][]attest.Revocation{p.ID: {other, later}}
	if d := c.admit(); d.Verdict != Run {
		t.Fatalf("verdict %s: an unauthorized or future revocation took effect: %+v", d.Verdict, d.Reasons)
	}
	root, _ := attest.Revoke(testKey("hub-a"), p.ID, testNow.Add(-time.Hour))
	c.revoked[p.ID] = append(c.revoked[p.ID], root)
	d := c.admit()
	if d.Verdict == Run {
		t.Fatal("the root's revocation did not take effect")
	}
	wantContains(t, "delegations[1]", reason(t, d, "delegations[1]", false), "revoked by hub-a at 2025-06-02T09:00:00Z")
}

func TestTrustRootCap(t *testing.T) {
	c := newTrustCase(t)
	c.require = Quorum{Weight: 1.5}
	c.delegate("hub-a", "bob", 1)
	c.delegate("hub-a", "carol", 1)
	c.sign("bob", "carol", "hub-a")
	d := c.admit()
	if d.Verdict == Run {
		t.Fatalf("two delegates at share 1 and their root counted more than the root's weight 1: %+v", d.Reasons)
	}
	wantContains(t, "trusted_hubs", reason(t, d, "trusted_hubs", false), "weight 1;")
	// The hub's own attestation counts first, whatever the order.
	wantContains(t, "attestations[2]", reason(t, d, "attestations[2]", true), "counted: hub-a (weight 1)")
	wantContains(t, "attestations[0]", reason(t, d, "attestations[0]", false), "hub-a's weight 1 is reached already")

	// Another root's weight adds beside it.
	c.delegate("hub-b", "dave", 0.5)
	c.sign("dave")
	if d := c.admit(); d.Verdict != Run {
		t.Fatalf("verdict %s with hub-a 1 + hub-b's delegate 1: %+v", d.Verdict, d.Reasons)
	}
}

func TestTrustKeyCountsOnce(t *testing.T) {
	c := newTrustCase(t)
	c.require = Quorum{Weight: 1.01}
	c.delegate("hub-a", "carol", 0.5)
	c.delegate("hub-b", "carol", 0.5) // weight 1: the best path
	c.sign("carol", "carol")
	d := c.admit()
	if d.Verdict == Run {
		t.Fatalf("carol counted twice: %+v", d.Reasons)
	}
	wantContains(t, "delegations[1]", reason(t, d, "delegations[1]", true), "hub-b → "+short("carol"))
	wantContains(t, "delegations[0]", reason(t, d, "delegations[0]", false), short("carol")+" is already in the trust tree through hub-b (weight 1); a key counts once")
	wantContains(t, "attestations[0]", reason(t, d, "attestations[0]", true), "(weight 1 = 2 × 0.5)")
	wantContains(t, "attestations[1]", reason(t, d, "attestations[1]", false), "a signer counts once")

	// A hub delegated to stays a hub.
	c = newTrustCase(t)
	c.delegate("hub-b", "hub-a", 1)
	c.sign("hub-a")
	d = c.admit()
	wantContains(t, "delegations[0]", reason(t, d, "delegations[0]", false), "is a trusted hub (hub-a): it counts as itself")
	wantContains(t, "attestations[0]", reason(t, d, "attestations[0]", true), "counted: hub-a (weight 1)")
}

func TestTrustCycleAndOrderAreHarmless(t *testing.T) {
	c := newTrustCase(t)
	c.require = Quorum{Signatures: 1, Weight: 1}
	c.delegate("bob", "carol", 1)
	c.delegate("carol", "bob", 1)
	c.delegate("hub-a", "bob", 0.5)
	c.sign("carol", "bob")
	d := c.admit()
	if d.Verdict != Run {
		t.Fatalf("verdict %s: %+v", d.Verdict, d.Reasons)
	}
	wantContains(t, "delegations[1]", reason(t, d, "delegations[1]", false), "is already in the trust tree through hub-a")
	wantContains(t, "attestations[0]", reason(t, d, "attestations[0]", true), "via hub-a → "+short("bob")+" (weight 0.5 = 1 × 0.5 × 1)")
}

func itoa(i int) string { return formatFloat(float64(i)) }

// FuzzTrustTree lays out delegations among five keys from fuzzed shares,
// depths and parents: admission never panics, counts each signer once,
// and never counts more than the hubs weigh.
func FuzzTrustTree(f *testing.F) {
	f.Add([]byte{0, 2, 128, 1, 2, 3, 255, 0, 3, 4, 64, 2}, uint8(2))
	f.Add([]byte{2, 3, 255, 2, 3, 2, 255, 2}, uint8(1))
	f.Add([]byte{}, uint8(0))
	names := []string{"hub-a", "hub-b", "bob", "carol", "dave"}
	f.Fuzz(func(t *testing.T, spec []byte, depth uint8) {
		c := newTrustCase(t)
		c.depth = int(depth % 4)
		for i := 0; i+3 < len(spec) && len(c.dels) < 12; i += 4 {
			from, to := names[int(spec[i])%len(names)], names[int(spec[i+1])%len(names)]
			if from == to {
				continue
			}
			share := float64(spec[i+2]%100+1) / 100
			c.delegate(from, to, share, func(d *attest.Delegation) { d.MaxDepth = int(spec[i+3] % 3) })
		}
		c.sign(names...)
		d := c.admit()
		signers, weight := 0, 0.0
		for _, r := range d.Reasons {
			if strings.HasPrefix(r.Rule, "attestations[") && r.OK {
				signers++
			}
			if r.Rule == "trusted_hubs" {
				_, after, _ := strings.Cut(r.Detail, "weight ")
				w, _, _ := strings.Cut(after, ";")
				if _, err := fmt.Sscan(w, &weight); err != nil {
					t.Fatalf("trusted_hubs detail %q", r.Detail)
				}
			}
		}
		if signers > len(names) || weight > 3+1e-9 {
			t.Fatalf("%d signers, weight %v from %d delegations: %+v", signers, weight, len(c.dels), d.Reasons)
		}
	})
}
