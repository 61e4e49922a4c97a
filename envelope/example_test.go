package envelope_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"github.com/andromeda-runner/andromeda/envelope"
)

// A node seals a run's submit actions; the target's endpoint, which was
// given the node's public key (andromeda keys show TARGET), verifies the
// body it receives with it.
func ExampleVerifyFrom() {
	seed := make([]byte, ed25519.SeedSize) // a fixed key, for a stable output
	key := ed25519.NewKeyFromSeed(seed)
	sealed, err := envelope.Seal(envelope.Envelope{
		Service: "vault-bot", Version: "1.0.0", RunID: "run-1", Target: "vault-7",
		Actions: []json.RawMessage{json.RawMessage(`{"fn": "mint", "amount": 250}`)},
		Created: time.Date(2026, 12, 2, 4, 30, 0, 0, time.UTC),
	}, key)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(sealed.Body))

	// At the endpoint:
	e, err := envelope.VerifyFrom(sealed.Body, key.Public().(ed25519.PublicKey))
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println(e.Target, len(e.Actions), string(e.Actions[0]))
	// Output:
	// {"digest":"sha256:1c0b27e01c78e58347837a69a9b9cc82548a0c9748040983cb772e52ee21a653","envelope":{"actions":[{"amount":250,"fn":"mint"}],"created":"2026-12-02T04:30:00Z","run_id":"run-1","service":"vault-bot","target":"vault-7","version":"1.0.0"},"signature":{"alg":"ed25519","key_id":"139e3940e64b5491","public_key":"O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=","value":"vzRhls5+1Y1T5EZuwAyu6KS5t5iFkJ4FIe4u3SqcCmMP2XW/jVXkHZ2nT+DSV4YRHC/9+yq6mg0OnaZVFSLFDQ=="}}
	// vault-7 1 {"amount":250,"fn":"mint"}
}
