package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/internal/golden"
	"github.com/andromeda-runner/andromeda/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/admit")

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// testKey is a reproducible key named name: its seed is sha256(name).
func testKey(name string) attest.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return attest.NewKeyFromSeed(seed[:])
}

var testNow = time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC) // a Monday

// testNode is the node of a case that does not describe its own: wasm
// without network, process with node, python and exec toolchains and
// network, docker disabled.
func testNode() Node {
	return Node{
		Drivers: map[string]DriverInfo{
			"wasm":    {Enabled: true},
			"process": {Enabled: true, Network: true, Languages: []string{"node", "python", "exec"}},
			"docker":  {Enabled: false, Reason: "docker engine not reachable at unix:///var/run/docker.sock", Network: true},
		},
		Services: 3,
		Now:      testNow,
	}
}

// caseFile is one golden case: testdata/admit/NAME.yaml. ${NAME} anywhere
// in the file is replaced by testKey(NAME)'s public key before decoding.
type caseFile struct {
	// Policy is the policy document (over DefaultPolicy); empty: defaults.
	Policy yaml.Node `yaml:"policy"`
	// Manifest is the service's manifest, checked by manifest.Check.
	Manifest yaml.Node `yaml:"manifest"`
	// Previous is the admitted version's manifest, if any.
	Previous yaml.Node `yaml:"previous"`
	// Submission holds the rest of the submission.
	Submission struct {
		Digest       *string           `yaml:"digest"`  // default digestA; "" for a source service before its fetch
		Payload      *int64            `yaml:"payload"` // default 4096
		Origin       string            `yaml:"origin"`
		Hops         []string          `yaml:"hops"`
		Depth        int               `yaml:"depth"`
		Drivers      []string          `yaml:"drivers"`
		Attestations []caseAttestation `yaml:"attestations"`
	} `yaml:"submission"`
	// Node replaces testNode when set.
	Node *struct {
		Drivers  map[string]DriverInfo `yaml:"drivers"`
		Services int                   `yaml:"services"`
		Targets  map[string]string     `yaml:"targets"`
		Self     string                `yaml:"self"`
		Now      time.Time             `yaml:"now"`
	} `yaml:"node"`
}

// caseAttestation describes an attestation to build: by a test key, over the
// submission's digest unless Digest says otherwise, then spoiled as asked.
type caseAttestation struct {
	By        string  `yaml:"by"`
	Digest    string  `yaml:"digest"`    // sign this digest instead
	Signature *string `yaml:"signature"` // replace the signature text
	Truncate  int     `yaml:"truncate"`  // keep this many signature characters
	Corrupt   bool    `yaml:"corrupt"`   // flip one bit of the signature
	Key       string  `yaml:"key"`       // replace the key text
}

var placeholder = regexp.MustCompile(`\$\{([a-z0-9-]+)\}`)

func expandKeys(data []byte) []byte {
	return placeholder.ReplaceAllFunc(data, func(m []byte) []byte {
		return []byte(testKey(string(placeholder.FindSubmatch(m)[1])).Public().String())
	})
}

func nodeBytes(t *testing.T, n *yaml.Node) []byte {
	t.Helper()
	if n.Kind == 0 {
		return nil
	}
	setBlock(n)
	data, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func setBlock(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	for _, c := range n.Content {
		setBlock(c)
	}
}

// loadCase builds the compiled policy, submission and node of a case.
func loadCase(t *testing.T, name string) (*Compiled, Submission, Node) {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var cf caseFile
	dec := yaml.NewDecoder(bytes.NewReader(expandKeys(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p, err := Parse(nodeBytes(t, &cf.Policy))
	if err != nil {
		t.Fatalf("%s: policy: %v", name, err)
	}
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("%s: compile: %v", name, err)
	}
	m, err := manifest.Check(nodeBytes(t, &cf.Manifest), manifest.YAML)
	if err != nil {
		t.Fatalf("%s: manifest: %v", name, err)
	}
	sub := Submission{Manifest: m, Digest: digestA, PayloadSize: 4096, Hops: cf.Submission.Hops, Depth: cf.Submission.Depth, Drivers: cf.Submission.Drivers}
	if cf.Previous.Kind != 0 {
		if sub.Previous, err = manifest.Check(nodeBytes(t, &cf.Previous), manifest.YAML); err != nil {
			t.Fatalf("%s: previous: %v", name, err)
		}
	}
	if d := cf.Submission.Digest; d != nil {
		sub.Digest = *d
	}
	if n := cf.Submission.Payload; n != nil {
		sub.PayloadSize = *n
	}
	if cf.Submission.Origin != "" {
		if sub.Origin, err = ParseOriginClaim(cf.Submission.Origin); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	signed := sub.Digest
	if signed == "" {
		signed = m.Source.Digest
	}
	for _, ca := range cf.Submission.Attestations {
		d := signed
		if ca.Digest != "" {
			d = ca.Digest
		}
		a := attest.SignAt(testKey(ca.By), d, testNow.Add(-time.Hour))
		if ca.Corrupt {
			sig, _ := base64.StdEncoding.DecodeString(a.Signature)
			sig[7] ^= 0x10
			a.Signature = base64.StdEncoding.EncodeToString(sig)
		}
		if ca.Truncate > 0 {
			a.Signature = a.Signature[:ca.Truncate]
		}
		if ca.Signature != nil {
			a.Signature = *ca.Signature
		}
		if ca.Key != "" {
			a.Key = ca.Key
		}
		sub.Attestations = append(sub.Attestations, a)
	}
	node := testNode()
	if n := cf.Node; n != nil {
		node = Node{Drivers: n.Drivers, Services: n.Services, Targets: n.Targets, Self: n.Self, Now: n.Now}
		if node.Now.IsZero() {
			node.Now = testNow
		}
	}
	return c, sub, node
}

// TestAdmitGolden runs every case in testdata/admit and compares the
// decision with NAME.golden; -update rewrites the golden files.
func TestAdmitGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/admit/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 40 {
		t.Errorf("%d golden cases, want at least 40", len(cases))
	}
	for _, name := range cases {
		base := strings.TrimSuffix(filepath.Base(name), ".yaml")
		t.Run(base, func(t *testing.T) {
			c, sub, node := loadCase(t, name)
			d := c.Admit(sub, node)
			got, err := json.MarshalIndent(d, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden.Check(t, strings.TrimSuffix(name, ".yaml")+".golden", got, *update, "go test ./policy -update")
			checkInvariants(t, d)
			if again := c.Admit(sub, node); !equalJSON(t, again, d) {
				t.Errorf("a second Admit of the same submission decided differently")
			}
		})
	}
}

// checkInvariants holds for every decision.
func checkInvariants(t *testing.T, d Decision) {
	t.Helper()
	failed := false
	for _, r := range d.Reasons {
		if r.Rule == "" || r.Detail == "" {
			t.Errorf("reason %+v has no rule or no detail", r)
		}
		if !r.OK && !strings.HasPrefix(r.Rule, "attestations[") {
			failed = true
		}
	}
	switch d.Verdict {
	case Run:
		if failed || d.Forward != nil {
			t.Errorf("verdict run with a failed reason or a forward")
		}
	case Forward:
		if d.Forward == nil || d.Forward.Peer == "" || d.Forward.Depth < 0 {
			t.Errorf("verdict forward without a peer: %+v", d.Forward)
		}
	case Reject:
		if !failed || d.Forward != nil {
			t.Errorf("verdict reject without a failed reason, or with a forward")
		}
	default:
		t.Errorf("verdict %q", d.Verdict)
	}
	if d.Dormant && d.Verdict != Run {
		t.Errorf("dormant without run")
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return bytes.Equal(x, y)
}

// TestDecisionJSON pins the wire form: the five keys always, the others
// only when set.
func TestDecisionJSON(t *testing.T) {
	d := Decision{Verdict: Run, Driver: "wasm", Network: "none", Reasons: []Reason{{Rule: "keywords", OK: true, Detail: "any"}}}
	got, _ := json.Marshal(d)
	want := `{"verdict":"run","driver":"wasm","limits":{"memory_bytes":0,"cpu":0,"timeout_ms":0,"pids":0,"concurrency":0},"network":"none","reasons":[{"rule":"keywords","ok":true,"detail":"any"}]}`
	if string(got) != want {
		t.Errorf("json.Marshal(Decision) =\n%s\nwant\n%s", got, want)
	}
	d.Forward = &ForwardTo{Peer: "https://p", Depth: 2}
	got, _ = json.Marshal(d)
	if !strings.HasSuffix(string(got), `,"forward":{"peer":"https://p","depth":2}}`) {
		t.Errorf("forward: %s", got)
	}
}
