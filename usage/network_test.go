package usage_test

import (
	"crypto/ed25519"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/usage"
)

// TestNetworkBytes: a record with network bytes signs them and verifies
// with them; one without signs to exactly the members records had before
// the network bytes existed, so old records and new ones of the same run
// are the same bytes; changing the bytes breaks the signature.
func TestNetworkBytes(t *testing.T) {
	priv := key(1)
	pub := priv.Public().(ed25519.PublicKey)
	r := record()
	r.NetworkRx, r.NetworkTx = 4096, 512
	body, err := usage.Sign(r, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := usage.Verify(body, pub)
	if err != nil || got.NetworkRx != 4096 || got.NetworkTx != 512 {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	forged := []byte(strings.Replace(string(body), `"network_rx_bytes":4096`, `"network_rx_bytes":40`, 1))
	if _, err := usage.Verify(forged, pub); err == nil {
		t.Errorf("Verify accepted changed network bytes")
	}

	old, err := usage.Sign(record(), priv)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Record map[string]json.RawMessage `json:"record"`
	}
	if err := json.Unmarshal(old, &b); err != nil {
		t.Fatal(err)
	}
	members := slices.Sorted(maps.Keys(b.Record))
	want := []string{"counters", "counters_dropped", "cpu_ns", "digest", "driver", "memory_scope", "node", "outcome", "peak_memory_bytes", "run_id", "service", "start", "trigger", "version", "wall_ns"}
	if !slices.Equal(members, want) {
		t.Errorf("a record without network bytes has members %v, want the members records always had %v", members, want)
	}
	var tot usage.Totals
	tot.Add(got)
	tot.Add(record())
	if tot.NetworkRx != 4096 || tot.NetworkTx != 512 || tot.Runs != 2 {
		t.Errorf("Totals = %+v", tot)
	}
}
