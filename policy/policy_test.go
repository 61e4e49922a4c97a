package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
)

func jsonIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

func TestParseDefaults(t *testing.T) {
	for _, doc := range []string{"", "   \n", "# only a comment\n", "{}", "{ }\n"} {
		p, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("Parse(%q) = %v", doc, err)
		}
		if def := DefaultPolicy(); !reflect.DeepEqual(p, def) {
			t.Errorf("Parse(%q) = %+v, want DefaultPolicy", doc, p)
		}
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Errorf("DefaultPolicy().Validate() = %v", err)
	}
}

// TestParseErrors: every malformed policy is an error naming the path of
// the problem and the rule.
func TestParseErrors(t *testing.T) {
	hub := func(name, key string) string { return "{name: " + name + ", key: '" + key + "'}" }
	good, other := testKey("a").Public().String(), testKey("b").Public().String()
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"unknown key", "keywordz: [defi]\n", []string{`keywordz: unknown field "keywordz" (did you mean "keywords"?)`}},
		{"unknown nested key", "limits:\n  memroy: {max: 1Gi}\n", []string{`limits.memroy: unknown field "memroy" (did you mean "memory"?)`}},
		{"unknown key far", "colour: blue\n", []string{`colour: unknown field "colour"`}},
		{"unknown key in list", "trusted_hubs:\n  - {name: a, key: '" + good + "', wieght: 2}\n", []string{`trusted_hubs[0].wieght: unknown field "wieght" (did you mean "weight"?)`}},
		{"hub key not base64", "trusted_hubs:\n  - " + hub("a", good) + "\n  - " + hub("b", "ed25519:not*base64") + "\n", []string{"trusted_hubs[1].key: malformed key: not base64: input byte 3"}},
		{"hub key wrong type", "trusted_hubs:\n  - " + hub("a", "ssh-ed25519:AAAA") + "\n", []string{`trusted_hubs[0].key: malformed key: key type "ssh-ed25519:", want "ed25519:"`}},
		{"hub key short", "trusted_hubs:\n  - " + hub("a", "ed25519:AAAA") + "\n", []string{"trusted_hubs[0].key: malformed key: 3 bytes, want 32"}},
		{"hub key base58", "trusted_hubs:\n  - " + hub("a", "WoD3FV8ByzerAUUCZ5rF58aTLpz5kTNxHnyBS5vzuqeq") + "\n", []string{`trusted_hubs[0].key: malformed key: must start with "ed25519:"`}},
		{"hub duplicate name", "trusted_hubs:\n  - " + hub("a", good) + "\n  - " + hub("a", other) + "\n", []string{"trusted_hubs[1].name: duplicate: trusted_hubs[0] has the same name"}},
		{"hub duplicate key", "trusted_hubs:\n  - " + hub("a", good) + "\n  - " + hub("b", good) + "\n", []string{"trusted_hubs[1].key: duplicate: trusted_hubs[0] has the same key"}},
		{"hub weight", "trusted_hubs:\n  - {name: a, key: '" + good + "', weight: -1}\n", []string{"trusted_hubs[0].weight: must be a number more than 0"}},
		{"hub name", "trusted_hubs:\n  - " + hub("Hub A", good) + "\n", []string{"trusted_hubs[0].name: must be"}},
		{"quorum unreachable", "trusted_hubs:\n  - " + hub("a", good) + "\ntrust: {max_depth: 0}\nrequire: {signatures: 2, weight: 1.5}\n", []string{"require.signatures: can never be reached: 1 trusted hubs", "require.weight: can never be reached: the trusted hubs weigh 1 in all"}},
		// Delegates raise neither: a hub's tree is one signature and counts
		// at most the hub's weight, whatever trust.max_depth is.
		{"quorum unreachable through delegates", "trusted_hubs:\n  - " + hub("a", good) + "\ntrust: {max_depth: 2}\nrequire: {signatures: 2, weight: 1.5}\n", []string{"require.signatures: can never be reached: 1 trusted hubs", "require.weight: can never be reached: the trusted hubs weigh 1 in all"}},
		{"trust depth", "trust: {max_depth: 17}\n", []string{"trust.max_depth: must be from 0 to 16"}},
		{"trust depth negative", "trust: {max_depth: -1}\n", []string{"trust.max_depth: must be from 0 to 16"}},
		{"trust unknown key", "trust: {depth: 1}\n", []string{`trust.depth: unknown field "depth"`}},
		{"bad size", "max_payload: 12Q\n", []string{"max_payload: must be a size like 64Mi, 1Gi, 512k or a number of bytes"}},
		{"size range", "max_payload: 100\n", []string{"max_payload: must be from 1Ki to 4Gi"}},
		{"description range", "max_description: 5000\n", []string{"max_description: must be from 0 to 4096"}},
		{"whole number", "max_description: 1.5\n", []string{"max_description: must be an integer, not 1.5"}},
		{"string for number", "max_description: ten\n", []string{"max_description: must be an integer, not a string"}},
		{"list for string", "keywords: defi\n", []string{"keywords: must be a list, not a string"}},
		{"bad keyword", "keywords: [defi, 'web 3']\n", []string{"keywords[1]: must be [a-z0-9-]{1,32}"}},
		{"duplicate keyword", "keywords: [defi, defi]\n", []string{"keywords[1]: duplicate of keywords[0]"}},
		{"cpu", "limits:\n  cpu: {max: -1}\n", []string{"limits.cpu.max: must be more than 0 and at most 1024 cores"}},
		{"over", "limits:\n  memory: {max: 1Gi, over: drop}\n", []string{"limits.memory.over: must be clamp or reject"}},
		{"timeout", "limits:\n  timeout: {max: 48h}\n", []string{"limits.timeout.max: must be from 1ms to 24h"}},
		{"timeout unit", "limits:\n  timeout: {max: 30}\n", []string{"limits.timeout.max: must be a duration like 500ms, 30s or 1h30m"}},
		{"pids", "limits:\n  pids: {max: 0}\n", []string{"limits.pids.max: must be from 1 to 1048576"}},
		{"network word", "network: some\n", []string{"network: must be none, any or a list of host:port patterns"}},
		{"network pattern", "network: [api.example.com, '*.com:443', 'x.io:99999']\n", []string{"network[0]: must be host:port", `network[1]: a wildcard host needs at least two labels`, `network[2]: port "99999"`}},
		{"allowed source url", "allowed_sources: ['https://github.com']\n", []string{"allowed_sources[0]: must be a host name with an optional :port, not a URL"}},
		{"prefer driver", "prefer_drivers:\n  vm: [rust]\n  docker: ['C Sharp']\n", []string{"prefer_drivers.docker[0]: must be a language", "prefer_drivers.vm: unknown driver: want wasm, process or docker"}},
		{"reward unit", "min_reward: {amount: 5}\n", []string{"min_reward.unit: must be [A-Za-z0-9]{1,16} when amount is more than 0"}},
		{"reward negative", "min_reward: {amount: -5, unit: KLY}\n", []string{"min_reward.amount: must be a number ≥ 0"}},
		{"origin", "origins:\n  - {kind: Hostchain, id: 'b t c', min_stake: -1}\n", []string{"origins[0].kind: must be [a-z0-9-]{1,32}", "origins[0].id: must be 1 to 128 printable characters without spaces", "origins[0].min_stake: must be a number ≥ 0"}},
		{"origin duplicate", "origins:\n  - {kind: hostchain, id: btc}\n  - {kind: hostchain, id: btc, min_stake: 1}\n", []string{"origins[1]: duplicate: origins[0] has the same kind and id"}},
		{"container", "containers:\n  - {name: '-bad'}\n", []string{"containers[0].name: must be a container name"}},
		{"container duplicate", "containers:\n  - {name: web}\n  - {name: db}\n  - {name: web}\n", []string{"containers[2].name: duplicate: containers[0] has the same name"}},
		{"registry", "registries:\n  python: ['ftp://mirror']\n  'Node JS': []\n", []string{`registries["Node JS"]: must be a language`, "registries.python[0]: must be an http or https URL with a host"}},
		{"docker registry", "registries:\n  docker: ['ghcr.io/org/', 'https://localhost:5000', 'ftp://x', 'Org/App', 'ghcr.io//x', 'ghcr.io/org/']\n", []string{"registries.docker[2]: must be an http or https URL with a host", "registries.docker[3]: must be an http or https registry URL (https://ghcr.io) or an image reference prefix", "registries.docker[4]: must be an http or https registry URL", "registries.docker[5]: duplicate of registries.docker[0]"}},
		{"container fallback", "container_fallback: wait\n", []string{"container_fallback: must be new or refuse"}},
		{"allow tags type", "images: {allow_tags: 'yes'}\n", []string{"images.allow_tags: must be true or false, not a string"}},
		{"images unknown key", "images: {allow_tag: true}\n", []string{`images.allow_tag: unknown field "allow_tag" (did you mean "allow_tags"?)`}},
		{"peer", "peers: ['htts://api-klyntar.coinbase.com', 'https://u:p@x.example']\n", []string{"peers[0]: must be an http or https URL with a host", "peers[1]: must not carry credentials"}},
		{"redirect depth", "redirect_depth: 17\n", []string{"redirect_depth: must be from 0 to 16"}},
		{"advertise", "advertise: {services: ['Greeter', 'ok'], to: ['ftp://x'], hops: 17}\n", []string{"advertise.services[0]: must be a service name", "advertise.to[0]: must be an http or https URL with a host", "advertise.hops: must be from 1 to 16"}},
		{"advertise nothing", "advertise: {to: ['https://b.example']}\n", []string{"advertise.services: must name at least one service"}},
		{"advertise nowhere", "advertise: {services: [greeter]}\n", []string{"advertise.to: must name the peers to advertise to, since peers names none"}},
		{"dormant", "dormant:\n  services: ['Batch*', '*x']\n", []string{"dormant.services[0]: must be a service name", "dormant.services[1]: must be a service name"}},
		{"growth", "upgrade: {growth: maybe}\n", []string{"upgrade.growth: must be allow, attest or reject"}},
		{"growth attest without hubs", "upgrade: {growth: attest}\n", []string{"upgrade.growth: attest needs trusted_hubs"}},
		{"rule name", "rules:\n  - {name: 'No Weekends', expr: 'true'}\n  - {name: x, expr: ''}\n", []string{"rules[0].name: must be [a-z0-9][a-z0-9-]{0,62}", "rules[1].expr: must not be empty"}},
		{"rule duplicate", "rules:\n  - {name: x, expr: 'true'}\n  - {name: x, expr: 'false'}\n", []string{"rules[1].name: duplicate: rules[0] has the same name"}},
		{"duplicate key", "keywords: [a]\nkeywords: [b]\n", []string{"keywords: duplicate key"}},
		{"yaml syntax", "keywords: [defi\n", []string{"yaml syntax:"}},
		{"two documents", "keywords: [a]\n---\nkeywords: [b]\n", []string{"must be one YAML document, found another at line 2"}},
		{"alias", "keywords: &k [a]\ndormant: {keywords: *k}\n", []string{"dormant.keywords: YAML aliases are not supported"}},
		{"null", "keywords: null\n", []string{"keywords: must not be null"}},
		{"empty value", "network:\n", []string{"network: must not be null (an empty value is null)"}},
		{"null ceiling", "limits: {memory: {max: ~}}\n", []string{"limits.memory.max: must not be null"}},
		{"null item", "peers: ['https://a.example', null]\n", []string{"peers[1]: must not be null"}},
		{"null root", "~\n", []string{"policy: must not be null"}},
		{"json null root", "null", []string{"policy: must not be null"}},
		{"key not a string", "registries: {1: ['https://x.example']}\n", []string{"registries.1: key must be a string (quote 1 to make it one)"}},
		{"custom tag", "keywords: [!thing a]\n", []string{"keywords[0]: YAML tag !thing is not supported"}},
		{"size as a list", "max_payload: [1]\n", []string{"max_payload: must be a string or a number, not a list"}},
		{"size in hex", "max_payload: 0x100000\n", []string{"max_payload: must be a size like 64Mi, 1Gi, 512k or a number of bytes"}},
		{"network item", "network: ['a.example:443', 1]\n", []string{"network[1]: must be a string (quote 1 to make it one)"}},
		{"int out of range", "{\"redirect_depth\": 1e30}", []string{"redirect_depth: must be an integer from -9223372036854775808 to 9223372036854775807"}},
		{"not finite", "{\"min_reward\": {\"amount\": 1e400}}", []string{"min_reward.amount: must be a finite number"}},
		{"merge", "limits:\n  <<: {pids: {max: 3}}\n", []string{`limits["<<"]: YAML merge keys are not supported`}},
		{"not a mapping", "- keywords\n", []string{"policy: must be a mapping, not a list"}},
		{"json syntax", "{\"keywords\": [\"defi\"]]}", []string{"json syntax: line 1, column 22: invalid character ']' after object key:value pair"}},
		{"json trailing", "{\"keywords\": []} {}", []string{"policy: json syntax: line 1, column 18: trailing data after the document"}},
		{"json unknown", "{\"limits\": {\"cpu\": {\"max\": 2, \"min\": 1}}}", []string{`limits.cpu.min: unknown field "min"`}},
		{"json wrong type", "{\"redirect_depth\": \"3\"}", []string{"redirect_depth: must be an integer, not a string"}},
		{"json truncated", "{\"keywords\": [", []string{"json syntax: line 1, column 15: unexpected end of input"}},
		{"invalid utf-8", "keywords: [\xff]\n", []string{"policy: must be valid UTF-8"}},
		{"too deep", "rules: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n", []string{"must not nest deeper than 32 levels"}},
		{"every problem at once", "max_description: -1\nkeywords: [UPPER_case!]\nredirect_depth: 99\npeers: [nope]\n", []string{"max_description: must be from 0 to 4096", "keywords[0]: must be", "peers[0]: must be an http or https URL", "redirect_depth: must be from 0 to 16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want %q", tc.in, tc.want)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Errorf("Parse error %T is not an Errors", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) =\n%v\nwant it to contain %q", tc.in, err, w)
				}
			}
			if len(errs) != len(tc.want) && tc.name != "yaml syntax" {
				t.Errorf("Parse(%q) reported %d problems, want %d:\n%v", tc.in, len(errs), len(tc.want), err)
			}
		})
	}
	if _, err := Parse(bytes.Repeat([]byte(" "), MaxSize+1)); err == nil || !strings.Contains(err.Error(), "must be at most 1048576 bytes") {
		t.Errorf("Parse(oversized) = %v", err)
	}
}

// TestCompileErrors: rules that do not compile are reported at load with
// the rule's index and name, together with every other problem.
func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"undeclared", "rules:\n  - {name: ok, expr: 'true'}\n  - {name: also-ok, expr: 'node.services < 100'}\n  - {name: no-weekend-jobs, expr: 'now.getDayOfWeek() != 0'}\n",
			[]string{"rules[2] (no-weekend-jobs): expr does not compile: ERROR: <input>:1:1: undeclared reference to 'now'"}},
		{"unknown field", "rules:\n  - {name: typo, expr: 'service.nme == \"x\"'}\n", []string{"rules[0] (typo): expr does not compile: ERROR: <input>:1:8: undefined field 'nme'"}},
		{"syntax", "rules:\n  - {name: broken, expr: 'service.name ==='}\n", []string{"rules[0] (broken): expr does not compile: ERROR: <input>:1:"}},
		{"not bool", "rules:\n  - {name: memory, expr: 'service.resources.memory'}\n", []string{"rules[0] (memory): expr must be a bool, not int"}},
		{"with a validation problem", "keywords: ['bad keyword']\nrules:\n  - {name: x, expr: '1 +'}\n", []string{"keywords[0]: must be", "rules[0] (x): expr does not compile"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPolicy()
			if err := p.decode([]byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			_, err := Compile(p)
			if err == nil {
				t.Fatalf("Compile = nil error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Compile =\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestExample keeps the README's commented example valid.
func TestExample(t *testing.T) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(p); err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) < 2 || len(p.TrustedHubs) < 2 || p.Limits.Memory.Over != OverReject {
		t.Errorf("example lost settings: %+v", p)
	}
}

func TestRoundTrip(t *testing.T) {
	p, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"yaml": y, "json": j} {
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("Parse(%s of the example) = %v\n%s", name, err, data)
		}
		if !reflect.DeepEqual(back, p) {
			t.Errorf("%s round trip:\n%+v\nwant\n%+v", name, back, p)
		}
		if back.Digest() != p.Digest() {
			t.Errorf("%s round trip changed the digest", name)
		}
	}
}

func TestDigest(t *testing.T) {
	a := DefaultPolicy()
	d := a.Digest()
	if err := attest.CheckDigest(d); err != nil {
		t.Errorf("Digest() = %q: %v", d, err)
	}
	b := DefaultPolicy()
	b.Keywords = []string{"defi"}
	if b.Digest() == d {
		t.Errorf("a changed setting kept the digest")
	}
	c := DefaultPolicy()
	c.Keywords = []string{}
	if c.Digest() != d {
		t.Errorf("an empty list and no list differ in digest")
	}
	hubs := DefaultPolicy()
	hubs.TrustedHubs = []Hub{{Name: "a", Key: testKey("a").Public().String()}}
	before := hubs.Digest()
	if hubs.TrustedHubs[0].Weight != 0 {
		t.Errorf("Digest normalized its receiver")
	}
	hubs.TrustedHubs[0].Weight = 1
	if hubs.Digest() != before {
		t.Errorf("weight 0 (default 1) and weight 1 differ in digest")
	}
	cp, err := Compile(b)
	if err != nil || cp.Digest() != b.Digest() {
		t.Errorf("Compiled.Digest = %v, %v", cp, err)
	}
}

// TestNodeConfigEmbedding: a node config holding a Policy decodes it
// strictly, over the defaults, from YAML and JSON.
func TestNodeConfigEmbedding(t *testing.T) {
	type config struct {
		Listen string `json:"listen" yaml:"listen"`
		Policy Policy `json:"policy" yaml:"policy"`
	}
	def := func() config { return config{Listen: ":7070", Policy: DefaultPolicy()} }

	cfg := def()
	dec := yaml.NewDecoder(strings.NewReader("listen: ':9090'\npolicy:\n  keywords: [DeFi]\n  limits:\n    pids: {max: 64}\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.Keywords[0] != "defi" || cfg.Policy.Limits.Pids.Max != 64 || cfg.Policy.Limits.Memory.Max.String() != DefaultMemory || cfg.Policy.RedirectDepth != DefaultRedirectDepth {
		t.Errorf("YAML embedding: %+v", cfg.Policy)
	}
	cfg = def()
	if err := json.Unmarshal([]byte(`{"listen": ":9090", "policy": {"redirect_depth": 1, "limits": {"cpu": {"max": "500m", "over": "reject"}}}}`), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.RedirectDepth != 1 || cfg.Policy.Limits.CPU.Max.Cores() != 0.5 || cfg.Policy.Limits.Timeout.Max.String() != DefaultTimeout {
		t.Errorf("JSON embedding: %+v", cfg.Policy)
	}
	cfg = def()
	err := yaml.Unmarshal([]byte("policy:\n  limits:\n    memroy: {max: 1Gi}\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), `limits.memroy: unknown field "memroy" (did you mean "memory"?)`) {
		t.Errorf("YAML embedding, unknown key: %v", err)
	}
	err = json.Unmarshal([]byte(`{"policy": {"trusted_hubs": [{"name": "a", "key": "x", "weight": "1"}]}}`), &cfg)
	if err == nil || !strings.Contains(err.Error(), "trusted_hubs[0].weight: must be a number, not a string") {
		t.Errorf("JSON embedding, wrong type: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(name, []byte(`{"keywords": ["defi"], "max_payload": 1048576}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(name)
	if err != nil || p.MaxPayload.Int64() != 1<<20 || p.Keywords[0] != "defi" {
		t.Errorf("Load(json) = %+v, %v", p, err)
	}
	if err := os.WriteFile(name, []byte(`{"keywords": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(name); err == nil || !strings.HasPrefix(err.Error(), name+": keywords: must be a list") {
		t.Errorf("Load(bad) = %v, want the file name and the path", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
}

func mustManifest(t testing.TB, y string) *manifest.Service {
	t.Helper()
	m, err := manifest.Check([]byte(y), manifest.YAML)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDiff(t *testing.T) {
	base := "name: s\nversion: 1.0.0\nruntime: {entry: main.wasm}\n"
	for _, tc := range []struct {
		name, old, new string
		want           []Growth
	}{
		{"same", base, base, nil},
		{"memory at the byte", base + "resources: {memory: 64Mi}\n", base + "resources: {memory: 67108865}\n", []Growth{{What: "memory", From: "64Mi", To: "67108865"}}},
		{"memory shrinks, cpu grows", base + "resources: {memory: 1Gi, cpu: 500m}\n", base + "resources: {memory: 64Mi, cpu: 0.6}\n", []Growth{{What: "cpu", From: "500m", To: "0.6"}}},
		{"same value other notation", base + "resources: {memory: 1024Mi, cpu: 1000m}\n", base + "resources: {memory: 1Gi, cpu: 1}\n", nil},
		{"timeout pids concurrency", base, base + "resources: {timeout: 6s, pids: 33, concurrency: 5}\n", []Growth{{What: "timeout", From: "5s", To: "6s"}, {What: "pids", From: "32", To: "33"}, {What: "concurrency", From: "4", To: "5"}}},
		{"network none to hosts", base, base + "capabilities: {network: [a.example:443, b.example:443]}\n", []Growth{{What: "network", To: "a.example:443"}, {What: "network", To: "b.example:443"}}},
		{"network hosts to any", base + "capabilities: {network: [a.example:443]}\n", base + "capabilities: {network: any}\n", []Growth{{What: "network", From: "a.example:443", To: "any"}}},
		{"network any to hosts", base + "capabilities: {network: any}\n", base + "capabilities: {network: [a.example:443]}\n", nil},
		{"actions", base + "capabilities: {actions: [http]}\n", base + "capabilities: {actions: [emit, http, submit]}\n", []Growth{{What: "action", To: "emit"}, {What: "action", To: "submit"}}},
		{"caps loosened", base + "capabilities: {actions: [submit, http], caps: {actions_per_run: 5, params: {submit: {amount: 100, fee: 2}, http: {n: 1}}}}\n",
			base + "capabilities: {actions: [submit], caps: {actions_per_run: 6, params: {submit: {amount: 1000.5}}}}\n",
			[]Growth{{What: "actions_per_run", From: "5", To: "6"}, {What: "cap", From: "submit.amount ≤ 100", To: "submit.amount ≤ 1000.5"}, {What: "cap", From: "submit.fee ≤ 2", To: "submit.fee uncapped"}}},
		{"caps dropped", base + "capabilities: {actions: [submit], caps: {actions_per_run: 5, runs_per_minute: 10, actions_per_minute: 20}}\n", base + "capabilities: {actions: [submit], caps: {actions_per_minute: 30}}\n",
			[]Growth{{What: "actions_per_run", From: "5", To: "256"}, {What: "runs_per_minute", From: "10", To: "none"}, {What: "actions_per_minute", From: "20", To: "30"}}},
		{"caps tightened or new", base + "capabilities: {actions: [submit], caps: {params: {submit: {amount: 100}}}}\n",
			base + "capabilities: {actions: [submit], caps: {actions_per_run: 10, params: {submit: {amount: 50, fee: 1}}}}\n", nil},
		{"new target", base, base + "target: vault-7\n", []Growth{{What: "target", To: "vault-7"}}},
		{"changed target", base + "target: vault-7\n", base + "target: vault-8\n", []Growth{{What: "target", From: "vault-7", To: "vault-8"}}},
		{"dropped target", base + "target: vault-7\n", base, nil},
		{"state", base, base + "capabilities: {state: true}\n", []Growth{{What: "state", To: "granted"}}},
		{"driver", base, "name: s\nversion: 1.0.0\nruntime: {driver: docker, image: 'x:1'}\n", []Growth{{What: "driver", From: "wasm", To: "docker"}}},
		{"driver stronger", "name: s\nversion: 1.0.0\nruntime: {driver: process, entry: run}\n", base, nil},
		{"http trigger", base + "triggers: [{kind: http, path: /hooks/a}]\n", base + "triggers: [{kind: http, path: /hooks/a}, {kind: http, path: /hooks/b}, {kind: manual}]\n", []Growth{{What: "trigger", To: "http /hooks/b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Diff(mustManifest(t, tc.old), mustManifest(t, tc.new))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Diff = %+v, want %+v", got, tc.want)
			}
		})
	}
	g := Growth{What: "memory", From: "64Mi", To: "128Mi"}
	if g.String() != "memory 64Mi → 128Mi" {
		t.Errorf("String() = %q", g.String())
	}
}

func TestReceipt(t *testing.T) {
	c, sub, node := loadCase(t, "testdata/admit/hubs-quorum-met.yaml")
	d := c.Admit(sub, node)
	at := time.Date(2025, 6, 2, 10, 0, 1, 0, time.UTC)
	r := attest.SignReceipt(testKey("node"), c.NewReceipt(sub, d, at))
	if err := attest.VerifyReceipt(r); err != nil {
		t.Fatal(err)
	}
	if r.PolicyDigest != c.Digest() || r.ServiceDigest != digestA || r.Verdict != "run" || r.Service != "price-watch" ||
		r.Version != "1.2.0" || len(r.Reasons) != len(d.Reasons) || r.Reasons[2].Rule != d.Reasons[2].Rule || !r.DecidedAt.Equal(at) {
		t.Errorf("receipt %+v", r)
	}
	data, _ := json.Marshal(r)
	var back attest.Receipt
	if err := json.Unmarshal(data, &back); err != nil || attest.VerifyReceipt(back) != nil {
		t.Errorf("a receipt read back from JSON does not verify: %v", err)
	}
	back.Reasons[0].OK = !back.Reasons[0].OK
	if attest.VerifyReceipt(back) == nil {
		t.Errorf("a receipt with a changed reason verifies")
	}

	src := mustManifest(t, "name: s\nversion: 1.0.0\nruntime: {entry: main.wasm}\nsource: {location: 'https://github.com/x.tgz', digest: "+digestB+"}\n")
	if r := c.NewReceipt(Submission{Manifest: src}, Decision{Verdict: Reject}, at); r.ServiceDigest != digestB {
		t.Errorf("receipt before the fetch: service_digest %q, want source.digest", r.ServiceDigest)
	}
}

// TestAdmitConcurrent: a Compiled is safe for concurrent use. Eight
// goroutines admit every golden case at once, each with its own policy and
// also against one shared policy, in a different order each; every
// decision equals the one made serially before, and every goroutine made
// all its decisions. This fails without -race too.
func TestAdmitConcurrent(t *testing.T) {
	names, err := filepath.Glob("testdata/admit/*.yaml")
	if err != nil || len(names) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	shared, _, _ := loadCase(t, "testdata/admit/every-setting-run.yaml")
	type job struct {
		name string
		c    *Compiled
		sub  Submission
		node Node
		want []byte // the serial decision, as JSON
	}
	var jobs []job
	for _, name := range names {
		c, sub, node := loadCase(t, name)
		for _, j := range []job{{name: name, c: c}, {name: name + " against every-setting-run's policy", c: shared}} {
			j.sub, j.node = sub, node
			if j.want, err = json.Marshal(j.c.Admit(sub, node)); err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, j)
		}
	}
	const goroutines, rounds = 8, 5
	decided := make([]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				for _, i := range rand.New(rand.NewPCG(uint64(g), uint64(r))).Perm(len(jobs)) { // an order of its own
					j := jobs[i]
					got, err := json.Marshal(j.c.Admit(j.sub, j.node))
					if err != nil || !bytes.Equal(got, j.want) {
						t.Errorf("%s, admitted concurrently = %s, %v; want %s as decided serially", j.name, got, err, j.want)
						return
					}
					decided[g]++
				}
			}
		})
	}
	wg.Wait()
	for g, n := range decided {
		if n != rounds*len(jobs) {
			t.Errorf("goroutine %d made %d decisions, want %d", g, n, rounds*len(jobs))
		}
	}
}

func TestAdmitDoesNotModify(t *testing.T) {
	c, sub, node := loadCase(t, "testdata/admit/every-setting-run.yaml")
	before, _ := json.Marshal(sub.Manifest)
	prev, _ := json.Marshal(sub.Previous)
	pol, _ := json.Marshal(c.Policy())
	c.Admit(sub, node)
	after, _ := json.Marshal(sub.Manifest)
	prevAfter, _ := json.Marshal(sub.Previous)
	polAfter, _ := json.Marshal(c.Policy())
	if !bytes.Equal(before, after) || !bytes.Equal(prev, prevAfter) || !bytes.Equal(pol, polAfter) {
		t.Errorf("Admit modified its input")
	}
	if d := c.Admit(Submission{}, node); d.Verdict != Reject || d.Reasons[0].Rule != "manifest" {
		t.Errorf("Admit(no manifest) = %+v", d)
	}
}

func TestAttestationCap(t *testing.T) {
	c, sub, node := loadCase(t, "testdata/admit/hubs-quorum-met.yaml")
	valid := sub.Attestations
	sub.Attestations = nil
	for range attest.MaxAttestations {
		sub.Attestations = append(sub.Attestations, attest.SignAt(testKey("mallory"), digestA, testNow))
	}
	sub.Attestations = append(sub.Attestations, valid...)
	d := c.Admit(sub, node)
	if r := reasonOf(d, "attestations[64]"); r.OK || !strings.Contains(r.Detail, "at most 64 attestations") || d.Verdict != Reject {
		t.Errorf("attestations past the cap: %+v, verdict %s", r, d.Verdict)
	}
}

// TestAdvertises: which services a policy advertises, to whom, how far.
func TestAdvertises(t *testing.T) {
	p := DefaultPolicy()
	p.Peers = []string{"https://b.example"}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := c.Advertises("greeter"); ok {
		t.Error("a policy without advertise advertises greeter")
	}
	p.Advertise = Advertise{Services: []string{"greeter", "batch-*"}}
	if c, err = Compile(p); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"greeter": true, "batch-1": true, "greeter2": false, "batch": false} {
		to, hops, ok := c.Advertises(name)
		if ok != want || ok && (len(to) != 1 || to[0] != "https://b.example" || hops != 1) {
			t.Errorf("Advertises(%s) = %v, %d, %v; want %v to peers, 1 hop", name, to, hops, ok, want)
		}
	}
	p.Advertise = Advertise{Services: []string{"*"}, To: []string{"https://c.example"}, Hops: 3}
	if c, err = Compile(p); err != nil {
		t.Fatal(err)
	}
	if to, hops, ok := c.Advertises("any"); !ok || len(to) != 1 || to[0] != "https://c.example" || hops != 3 {
		t.Errorf("Advertises(any) = %v, %d, %v", to, hops, ok)
	}
}
