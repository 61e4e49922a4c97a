package usage_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/andromeda-runner/andromeda/usage"
)

// A billing system checks a record it got from GET /v1/usage (records[i])
// or GET /v1/services/{name}/runs/{id} (usage_record) against the node key
// it trusts, and bills what the record says.
func ExampleVerify() {
	nodeKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)) // the node's, for the example
	sealed, _ := usage.Sign(usage.Record{Service: "etl", Version: "1.2.0", RunID: "r-1", Trigger: "cron",
		Start: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC), Outcome: "ok", Driver: "process",
		WallNS: 2e9, Counters: map[string]float64{"rows": 1200}}, nodeKey)

	trusted := nodeKey.Public().(ed25519.PublicKey) // got from the operator, or GET /v1/node's node_key
	r, err := usage.Verify(sealed, trusted)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println(r.Service, r.RunID, r.Counters["rows"], time.Duration(r.WallNS))

	tampered := bytes.Replace(sealed, []byte(`"rows":1200`), []byte(`"rows":12`), 1)
	_, err = usage.Verify(tampered, trusted)
	fmt.Println(err != nil)
	// Output:
	// etl r-1 1200 2s
	// true
}
