package policy

import (
	"math/big"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
)

func importSeed(t *testing.T) Klyntar {
	t.Helper()
	data, err := os.ReadFile("testdata/klyntar/runner.json")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ImportKlyntar(data)
	if err != nil {
		t.Fatalf("ImportKlyntar(seed 000) = %v", err)
	}
	return k
}

// TestImportKlyntarMappings checks what each key of the seed's example
// configuration became.
func TestImportKlyntarMappings(t *testing.T) {
	k := importSeed(t)
	var keys []string
	to := map[string]Mapping{}
	for _, m := range k.Mappings {
		keys = append(keys, m.Key)
		to[m.Key] = m
	}
	if !slices.Equal(keys, klyntarKeys) {
		t.Errorf("mapped keys %v, want every key of the seed in order: %v", keys, klyntarKeys)
	}
	for key, want := range map[string]string{
		"DOCKER_CONFIGS":    "docker.host: tcp://localhost:2375",
		"DESC_MAX_LEN":      "max_description: 199",
		"REDIRECTION_DEPTH": "redirect_depth: 3",
		"STATIC_NODES":      "peers: [https://someklyntarpool.io]",
		"TRUSTED_HUBS":      "trusted_hubs: []",
		"PREFER_TOOLCHAIN":  "prefer_drivers: {docker: [rust, node, c, c++]; process: [rust, node, c, c++]}",
		"KEYWORDS":          "keywords: [web3, defi, bridge, tor, control, storage, api]",
		"NETCAP":            "network: none",
		"DORMITORY":         "dormant.services: []",
		"ALLOWED_STORAGE":   "allowed_sources: [github.com, gitlab.com, pkg.go.dev, crates.io, npmjs.com, rubygems.org, getcomposer.org, www.nuget.org, hackage.haskell.org, index.scala-lang.org]",
		"REGISTRIES":        "registries: {node: [https://localhost:4873]; docker: [https://localhost:5000]}",
	} {
		if got := to[key].To; got != want {
			t.Errorf("%s → %q, want %q", key, got, want)
		}
	}
	for key, note := range map[string]string{
		"STATIC_NODES":      `dropped: "htts://api-klyntar.coinbase.com" (not an http or https URL)`,
		"TRUSTED_HUBS":      "WoD3FV8ByzerAUUCZ5rF58aTLpz5kTNxHnyBS5vzuqeq (33 bytes, not a 32-byte ed25519 key)",
		"PREFER_SYMBIOTES":  "a preference",
		"DESC_MAX_LEN":      "shorter than 200 characters",
		"NETCAP":            "no network capability",
		"REGISTRIES":        "python, rust: no registry listed",
		"CONTAINERS":        "last dash-separated part",
		"PREFER_HOSTCHAINS": "MIN_FREEZE",
	} {
		if !strings.Contains(to[key].Note, note) {
			t.Errorf("%s note %q, want it to mention %q", key, to[key].Note, note)
		}
	}
	if k.Docker != (Docker{Host: "tcp://localhost:2375"}) {
		t.Errorf("Docker = %+v, want tcp://localhost:2375 without TLS", k.Docker)
	}
	if o := k.Policy.Origins; o.Required || o.MinStake != 0 || len(o.Prefer) != 6 || o.Prefer[3] != (Origin{Kind: "hostchain", ID: "btc"}) {
		t.Errorf("origins = %+v, want a preference (required false, min_stake 0) listing the six", o)
	}
	if c := k.Policy.Containers; len(c) != 2 || !slices.Equal(c[0].Languages, []string{"node"}) || !slices.Equal(c[1].Languages, []string{"rust", "node", "go", "python"}) {
		t.Errorf("containers = %+v", c)
	}
}

// seedSubmission is a docker service that satisfies every key of the seed's
// configuration.
func seedSubmission(t *testing.T, mod func(*manifest.Service, *Submission)) Submission {
	t.Helper()
	m, err := manifest.Check([]byte(`
name: price-watch
version: 1.2.0
description: `+strings.Repeat("d", 199)+`
keywords: [defi, nft]
runtime: {driver: docker, language: node, image: "localhost:5000/price-watch@sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"}
source:
  location: https://github.com/org/price-watch/archive/v1.2.0.tar.gz
  digest: `+digestA+`
`), manifest.YAML)
	if err != nil {
		t.Fatal(err)
	}
	sub := Submission{Manifest: m, Digest: digestA, PayloadSize: 1 << 20, Origin: OriginClaim{Kind: "symbiote", ID: "QfzhbWJsPa9NjqxepcXSbp1X58pkQNACS2ReyRo2SMCK"}}
	if mod != nil {
		mod(m, &sub)
	}
	return sub
}

func seedNode() Node {
	return Node{Now: testNow, Drivers: map[string]DriverInfo{
		"wasm":    {Enabled: true},
		"process": {Enabled: true, Network: true, Languages: []string{"node", "python"}},
		"docker":  {Enabled: true, Network: true},
	}}
}

func failed(d Decision) []string {
	var rules []string
	for _, r := range d.Reasons {
		if !r.OK && !strings.HasPrefix(r.Rule, "attestations[") {
			rules = append(rules, r.Rule)
		}
	}
	return rules
}

// TestImportKlyntarAdmits: a service that satisfies the seed's configuration
// runs; one that violates a key is not run here, with that key's setting
// named (forwarded to the seed's static node while redirect depth is left).
func TestImportKlyntarAdmits(t *testing.T) {
	k := importSeed(t)
	c, err := Compile(k.Policy)
	if err != nil {
		t.Fatal(err)
	}
	ok := c.Admit(seedSubmission(t, nil), seedNode())
	if ok.Verdict != Run || ok.Driver != "docker" || ok.Container != "group1-WoD3FV8ByzerAUUCZ5rF58aTLpz5kTNxHnyBS5vzuqeq-node" ||
		!slices.Equal(ok.Registries, []string{"https://localhost:4873"}) || ok.Dormant || ok.Network != "none" {
		t.Fatalf("the satisfying service: %s", mustJSON(t, ok))
	}

	const peer = "https://someklyntarpool.io"
	for _, tc := range []struct {
		key     string // the KLYNTAR key violated
		rule    string // the setting it became, named by the failed reason
		mod     func(*manifest.Service, *Submission)
		verdict Verdict
	}{
		{"DESC_MAX_LEN", "max_description", func(m *manifest.Service, _ *Submission) { m.Description += "d" }, Forward},
		{"KEYWORDS", "keywords", func(m *manifest.Service, _ *Submission) { m.Keywords = []string{"nft"} }, Forward},
		{"NETCAP", "network", func(m *manifest.Service, _ *Submission) {
			m.Capabilities.Network = manifest.Network{Hosts: []string{"api.example.com:443"}}
		}, Forward},
		{"ALLOWED_STORAGE", "allowed_sources", func(m *manifest.Service, _ *Submission) {
			m.Source.Location = "https://gist.githubusercontent.com/x/pw.tar.gz"
		}, Forward},
		{"REGISTRIES", "registries", func(m *manifest.Service, _ *Submission) {
			m.Runtime.Image = "ghcr.io/org/price-watch@sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
		}, Forward},
		{"REDIRECTION_DEPTH", "redirect_depth", func(m *manifest.Service, s *Submission) {
			m.Keywords = []string{"nft"}
			s.Hops, s.Depth = []string{"https://a.example", "https://b.example", "https://c.example"}, 0
		}, Reject},
	} {
		t.Run(tc.key, func(t *testing.T) {
			d := c.Admit(seedSubmission(t, tc.mod), seedNode())
			if d.Verdict != tc.verdict || !slices.Contains(failed(d), tc.rule) {
				t.Fatalf("verdict %s, failed %v; want %s naming %s:\n%s", d.Verdict, failed(d), tc.verdict, tc.rule, mustJSON(t, d))
			}
			if tc.verdict == Forward && (d.Forward == nil || *d.Forward != ForwardTo{Peer: peer, Depth: 2}) {
				t.Errorf("STATIC_NODES and REDIRECTION_DEPTH: forward = %+v, want %s with depth 2", d.Forward, peer)
			}
		})
	}

	t.Run("PREFER_TOOLCHAIN", func(t *testing.T) {
		// A preference, not a restriction: it picks docker for rust among
		// the drivers a service accepts.
		d := c.Admit(seedSubmission(t, func(m *manifest.Service, s *Submission) {
			m.Runtime = manifest.Runtime{Driver: manifest.DriverWasm, Language: "rust", Entry: "main.wasm"}
			s.Drivers = []string{"docker"}
		}), seedNode())
		if d.Driver != "docker" || d.Container != "group1-JeVZcdi8TQZaX6TKhtSKLCzMQMRCx5JjsQTiGbAaLPXW-rust.node.go.python" || reasonOf(d, "prefer_drivers").Detail != "prefer_drivers.docker lists rust" {
			t.Errorf("driver %s, container %q, %+v; want docker in the rust container", d.Driver, d.Container, reasonOf(d, "prefer_drivers"))
		}
	})
	t.Run("CONTAINERS", func(t *testing.T) {
		d := c.Admit(seedSubmission(t, func(m *manifest.Service, _ *Submission) { m.Runtime.Language = "java" }), seedNode())
		if d.Verdict != Run || d.Container != "" {
			t.Errorf("a java docker service: verdict %s, container %q; want a new container", d.Verdict, d.Container)
		}
	})
	t.Run("DOCKER_CONFIGS", func(t *testing.T) {
		if k.Docker.Host != "tcp://localhost:2375" {
			t.Errorf("Docker.Host = %q", k.Docker.Host)
		}
	})
	t.Run("DORMITORY", func(t *testing.T) {
		if ok.Dormant || len(k.Policy.Dormant.Services) != 0 {
			t.Errorf("an empty DORMITORY makes nothing dormant")
		}
	})
	t.Run("TRUSTED_HUBS", func(t *testing.T) {
		// The seed's hub keys are not 32-byte ed25519 keys and it sets no
		// quorum: attestations are reported, not required.
		sub := seedSubmission(t, nil)
		sub.Attestations = []attest.Attestation{attest.SignAt(testKey("stranger"), digestA, testNow)}
		d := c.Admit(sub, seedNode())
		if r := reasonOf(d, "attestations[0]"); d.Verdict != Run || r.OK || !strings.Contains(r.Detail, "not a trusted hub") {
			t.Errorf("an attestation by an unknown key: %s", mustJSON(t, d))
		}
	})
}

// TestImportKlyntarHubKey: a TRUSTED_HUBS key that is base58 of 32 bytes
// becomes a trusted ed25519 key whose attestations count.
func TestImportKlyntarHubKey(t *testing.T) {
	key := testKey("klyntar-auditor")
	b58 := encodeBase58(key.Public())
	k, err := ImportKlyntar([]byte(`{"TRUSTED_HUBS": {"` + b58 + `": {}, "7HHKSu9BNF7GuB3CX8BbUEzx9pp1SqLksigvfMZz9hopvWJJRSW4qrXTKWFq5ExSpm": {"BALANCE": 5}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Policy.TrustedHubs) != 1 || k.Policy.TrustedHubs[0].Key != key.Public().String() {
		t.Fatalf("trusted_hubs = %+v, want the one ed25519 key", k.Policy.TrustedHubs)
	}
	if note := k.Mappings[0].Note; !strings.Contains(note, "48 bytes") || !strings.Contains(note, "ignored: "+b58[:0]) || !strings.Contains(note, "BALANCE") {
		t.Errorf("note %q should name the dropped 48-byte key and the ignored BALANCE", note)
	}
	k.Policy.Require = Quorum{Signatures: 1}
	c, err := Compile(k.Policy)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := manifest.Check([]byte("name: s\nversion: 1.0.0\nruntime: {entry: main.wasm}\n"), manifest.YAML)
	d := c.Admit(Submission{Manifest: m, Digest: digestA, Attestations: []attest.Attestation{attest.SignAt(key, digestA, testNow)}}, seedNode())
	if d.Verdict != Run {
		t.Errorf("attested by the imported hub: %s", mustJSON(t, d))
	}
}

func TestImportKlyntarErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `DESC_MAX_LEN=200`, "klyntar: json syntax: line 1, column 1"},
		{"array", `[]`, "klyntar: must be a mapping, not a list"},
		{"unknown key", `{"DESC_MAX_LEN": 10, "MAX_PAYLOAD_SIZE": 100}`, "MAX_PAYLOAD_SIZE: unknown KLYNTAR runner key"},
		{"wrong type", `{"DESC_MAX_LEN": "200"}`, "DESC_MAX_LEN: must be an integer, not a string"},
		{"depth range", `{"REDIRECTION_DEPTH": 99}`, "REDIRECTION_DEPTH: must be from 0 to 16, got 99"},
		{"desc zero", `{"DESC_MAX_LEN": 0}`, "DESC_MAX_LEN: must be at least 1"},
		{"docker field", `{"DOCKER_CONFIGS": {"protocol": "http", "host": "h", "port": 1, "tls": true}}`, `DOCKER_CONFIGS: tls: unknown field "tls"`},
		{"docker port", `{"DOCKER_CONFIGS": {"protocol": "http", "host": "h", "port": 0}}`, "DOCKER_CONFIGS: port: must be from 1 to 65535"},
		{"docker protocol", `{"DOCKER_CONFIGS": {"protocol": "ssh", "host": "h", "port": 22}}`, `DOCKER_CONFIGS: protocol: must be http or https, got "ssh"`},
		{"hub value", `{"TRUSTED_HUBS": {"abc": 1}}`, `TRUSTED_HUBS: "abc": must be a mapping, not a number`},
		{"freeze", `{"PREFER_HOSTCHAINS": {"btc": {"MIN_FREEZE": -1}}}`, `PREFER_HOSTCHAINS: "btc".MIN_FREEZE: must be a number ≥ 0`},
		{"netcap", `{"NETCAP": {"not a host": {}}}`, `NETCAP: "not a host": must be host:port`},
		{"keywords type", `{"KEYWORDS": "defi"}`, "KEYWORDS: must be a list, not a string"},
		{"null", `{"KEYWORDS": null}`, "KEYWORDS: must not be null"},
		{"duplicate", `{"KEYWORDS": [], "KEYWORDS": []}`, "KEYWORDS: duplicate key"},
		{"trailing", `{} {}`, "trailing data"},
		{"truncated", `{"KEYWORDS": [`, "unexpected end of input"},
		{"two problems", `{"DESC_MAX_LEN": "x", "REDIRECTION_DEPTH": -1}`, "DESC_MAX_LEN: must be an integer, not a string\nREDIRECTION_DEPTH: must be from 0 to 16, got -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ImportKlyntar([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ImportKlyntar(%s) = %v, want error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestImportKlyntarDrops(t *testing.T) {
	k, err := ImportKlyntar([]byte(`{
		"ALLOWED_STORAGE": ["github.com", "https://gitlab.com/", "github.com"],
		"KEYWORDS": ["DeFi", "not a keyword"],
		"PREFER_TOOLCHAIN": {"host": ["Node.js", "golang"], "vm": ["rust"]},
		"DOCKER_CONFIGS": {"protocol": "https", "host": "docker.internal", "port": 2376},
		"DORMITORY": {"nightly-report": {}},
		"CONTAINERS": ["plain-box"]
	}`))
	if err != nil {
		t.Fatal(err)
	}
	p := k.Policy
	if !slices.Equal(p.AllowedSources, []string{"github.com"}) || !strings.Contains(k.Mappings[len(k.Mappings)-2].Note, `dropped: "https://gitlab.com/"`) {
		t.Errorf("allowed_sources = %v, mapping %+v", p.AllowedSources, k.Mappings[len(k.Mappings)-2])
	}
	if !slices.Equal(p.Keywords, []string{"defi"}) {
		t.Errorf("keywords = %v", p.Keywords)
	}
	if !slices.Equal(p.PreferDrivers["process"], []string{"node", "go"}) || len(p.PreferDrivers) != 1 {
		t.Errorf("prefer_drivers = %v", p.PreferDrivers)
	}
	if k.Docker != (Docker{Host: "tcp://docker.internal:2376", TLS: true}) {
		t.Errorf("docker = %+v", k.Docker)
	}
	if !slices.Equal(p.Dormant.Services, []string{"nightly-report"}) {
		t.Errorf("dormant = %+v", p.Dormant)
	}
	if len(p.Containers) != 1 || p.Containers[0].Languages != nil {
		t.Errorf("containers = %+v, want plain-box for any language", p.Containers)
	}
}

func reasonOf(d Decision, rule string) Reason {
	for _, r := range d.Reasons {
		if r.Rule == rule {
			return r
		}
	}
	return Reason{}
}

func encodeBase58(b []byte) string {
	n := new(big.Int).SetBytes(b)
	var out []byte
	radix, mod := big.NewInt(58), new(big.Int)
	for n.Sign() > 0 {
		n.DivMod(n, radix, mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, '1')
	}
	slices.Reverse(out)
	return string(out)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	data, err := jsonIndent(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
