package policy

import (
	"slices"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/attest"
)

// benchPolicy sets every setting and five rules.
const benchPolicy = `
max_description: 200
max_payload: 8Mi
allowed_sources: [github.com, '*.githubusercontent.com']
trusted_hubs:
  - {name: hub-a, key: "${hub-a}", weight: 1}
  - {name: hub-b, key: "${hub-b}", weight: 2}
  - {name: hub-c, key: "${hub-c}", weight: 1}
  - {name: hub-d, key: "${hub-d}", weight: 1}
require: {signatures: 3, weight: 3}
prefer_drivers:
  process: [node, python]
  docker: [rust]
keywords: [web3, defi, api]
network: ['*.example.com:443', 'db.internal:*']
limits:
  memory: {max: 256Mi, over: reject}
  cpu: {max: 1}
  timeout: {max: 30s, over: reject}
  pids: {max: 64}
  concurrency: {max: 8}
min_reward: {amount: 5, unit: KLY}
origins:
  - {kind: hostchain, id: btc, min_stake: 10}
  - {kind: symbiote, id: QfzhbWJsPa9NjqxepcXSbp1X58pkQNACS2ReyRo2SMCK}
containers:
  - {name: group1-node, languages: [node]}
registries:
  node: ['https://localhost:4873']
  docker: ['https://localhost:5000']
peers: ['https://peer-a.example', 'https://peer-b.example']
redirect_depth: 2
dormant: {services: ['batch-*'], keywords: [batch]}
upgrade: {growth: attest, require: {signatures: 1, weight: 2}}
shared_targets: [shared-vault]
rules:
  - {name: small-memory, expr: 'service.resources.memory <= 128 * 1024 * 1024', message: at most 128Mi here}
  - {name: weekdays, expr: "node.now.getDayOfWeek('UTC') != 0 && node.now.getDayOfWeek('UTC') != 6"}
  - {name: cron-not-too-often, expr: "service.triggers.all(t, t.kind != 'cron' || t.every >= 10)"}
  - {name: network-needs-weight, expr: "service.capabilities.network == 'none' || submission.weight >= 2.0"}
  - {name: submit-needs-target, expr: "!('submit' in service.capabilities.actions) || service.target != ''"}
`

const benchManifest = `
name: price-watch
version: 1.2.0
description: Rebalances when the spread exceeds 2%.
keywords: [defi, api]
runtime: {driver: process, language: node, entry: main.js}
triggers:
  - {kind: cron, every: 30s}
  - {kind: event, topic: prices.updated}
resources: {memory: 128Mi, cpu: 0.5, timeout: 20s, pids: 32, concurrency: 4}
capabilities:
  network: [api.example.com:443, db.internal:5432]
  actions: [http, submit]
  state: true
target: shared-vault
reward: {amount: 5, unit: KLY}
config: {symbol: ETHUSD, threshold: 2}
`

const benchPrevious = `
name: price-watch
version: 1.1.0
runtime: {driver: process, language: node, entry: main.js}
resources: {memory: 64Mi}
capabilities:
  network: [api.example.com:443]
  actions: [http]
`

func benchSetup(b *testing.B) (*Compiled, Submission, Node) {
	b.Helper()
	p, err := Parse(expandKeys([]byte(benchPolicy)))
	if err != nil {
		b.Fatal(err)
	}
	c, err := Compile(p)
	if err != nil {
		b.Fatal(err)
	}
	sub := Submission{
		Manifest:    mustManifest(b, benchManifest),
		Previous:    mustManifest(b, benchPrevious),
		Digest:      digestA,
		PayloadSize: 2 << 20,
		Origin:      OriginClaim{Kind: "hostchain", ID: "btc", Stake: 25},
	}
	for _, hub := range []string{"hub-a", "hub-b", "hub-c"} {
		sub.Attestations = append(sub.Attestations, attest.SignAt(testKey(hub), digestA, testNow.Add(-time.Hour)))
	}
	return c, sub, testNode()
}

// BenchmarkAdmit measures one decision: a service with three attestations
// (three ed25519 verifications) against a policy with every setting and
// five CEL rules, an upgrade with growth. It reports decisions/s and the
// 50th and 99th percentile latency.
func BenchmarkAdmit(b *testing.B) {
	c, sub, node := benchSetup(b)
	if d := c.Admit(sub, node); d.Verdict != Run || len(d.Reasons) < 25 {
		b.Fatalf("the benchmark's service is not admitted: %s", mustJSON(b, d))
	}
	b.Run("3-attestations", func(b *testing.B) { runAdmit(b, c, sub, node) })
	none := sub
	none.Attestations, none.Previous = nil, nil
	b.Run("no-attestations", func(b *testing.B) { runAdmit(b, c, none, node) })

	// The same quorum reached through the trust tree: hub-b and hub-c
	// sign, hub-a delegates half its weight to carol, carol all of hers to
	// dave, and dave signs: hub-a's tree is the third signature, weight
	// 0.5 (two delegation and three attestation signatures to verify).
	tree := sub
	tree.Attestations = nil
	for _, d := range []struct {
		from, to string
		share    float64
	}{{"hub-a", "carol", 0.5}, {"carol", "dave", 1}} {
		del, err := attest.Delegate(testKey(d.from), attest.Delegation{
			Delegate: testKey(d.to).Public().String(), Share: d.share, MaxDepth: 2,
			IssuedAt: testNow.Add(-time.Hour), Expires: testNow.Add(24 * time.Hour),
		})
		if err != nil {
			b.Fatal(err)
		}
		tree.Delegations = append(tree.Delegations, del)
	}
	for _, k := range []string{"hub-b", "hub-c", "dave"} {
		tree.Attestations = append(tree.Attestations, attest.SignAt(testKey(k), digestA, testNow.Add(-time.Hour)))
	}
	if d := c.Admit(tree, node); d.Verdict != Run {
		b.Fatalf("the trust-tree submission is not admitted: %s", mustJSON(b, d))
	}
	b.Run("2-level-delegation", func(b *testing.B) { runAdmit(b, c, tree, node) })
}

func runAdmit(b *testing.B, c *Compiled, sub Submission, node Node) {
	b.ReportAllocs()
	lat := make([]time.Duration, 0, 1<<16)
	start := time.Now()
	for b.Loop() {
		t := time.Now()
		c.Admit(sub, node)
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(t))
		}
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
