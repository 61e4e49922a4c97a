package policy

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary documents to Parse: it must never panic, and a
// policy it accepts must survive its canonical JSON with the same digest,
// and Compile must not panic on it.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/example.yaml", "testdata/admit/every-setting-run.yaml"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"keywords": ["defi"], "limits": {"memory": {"max": "1Gi", "over": "reject"}}}`))
	f.Add([]byte("network: ['*.example.com:443']\nrules:\n  - {name: a, expr: 'service.name == \"x\"'}\n"))
	f.Add([]byte("limits: {cpu: {max: 500m}}\nredirect_depth: 0\n"))
	f.Add([]byte("x: &a [1]\ny: *a\n"))
	f.Add([]byte("origins: {required: false, prefer: [{kind: hostchain, id: btc, min_stake: 2}], min_stake: 1}\nlimits: {services: 3}\n"))
	f.Add([]byte(`{"origins": [{"kind": "symbiote", "id": "abc"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		_, _ = Compile(p)
		j, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		back, err := Parse(j)
		if err != nil {
			t.Fatalf("Parse(json.Marshal(Parse(%q))) = %v\n%s", data, err, j)
		}
		if back.Digest() != p.Digest() {
			t.Fatalf("round trip changed the digest:\n%s", j)
		}
	})
}

// FuzzImportKlyntar: ImportKlyntar never panics, and what it returns is a
// valid policy.
func FuzzImportKlyntar(f *testing.F) {
	if data, err := os.ReadFile("testdata/klyntar/runner.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"TRUSTED_HUBS": {"11111111111111111111111111111111": {}}, "NETCAP": {"*": {}}}`))
	f.Add([]byte(`{"DOCKER_CONFIGS": {"protocol": "https", "host": "/var/run/docker.sock", "port": 0}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ImportKlyntar(data)
		if err != nil {
			return
		}
		if err := k.Policy.Validate(); err != nil {
			t.Fatalf("ImportKlyntar returned an invalid policy: %v", err)
		}
	})
}
