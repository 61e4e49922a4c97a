package attest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func jsonMarshal(v any) ([]byte, error)      { return json.Marshal(v) }
func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// FuzzDecodeHeader feeds arbitrary header values to DecodeHeader and every
// decoded attestation to Parse and Verify: none may panic, and a decoded
// list must survive a round trip through EncodeHeader.
func FuzzDecodeHeader(f *testing.F) {
	f.Add(EncodeHeader([]Attestation{SignAt(testKey("a"), digestA, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))}))
	f.Add(EncodeHeader([]Attestation{{Key: "ed25519:AAAA", Digest: digestA, Signature: "AAAA"}}))
	f.Add("W3sia2V5IjoiIn1d")
	f.Add("")
	f.Add("====")
	f.Fuzz(func(t *testing.T, v string) {
		as, err := DecodeHeader(v)
		if err != nil {
			return
		}
		for _, a := range as {
			_ = Verify(a, digestA)
		}
		back, err := DecodeHeader(EncodeHeader(as))
		if err != nil {
			t.Fatalf("DecodeHeader(EncodeHeader(%v)) = %v", as, err)
		}
		if len(as) == 0 && len(back) == 0 {
			return
		}
		for i := range as {
			as[i].SignedAt = as[i].SignedAt.UTC()
			back[i].SignedAt = back[i].SignedAt.UTC()
		}
		if !reflect.DeepEqual(back, as) {
			t.Fatalf("round trip: %v, want %v", back, as)
		}
	})
}

// FuzzParse checks that Parse and ParsePublicKey never panic and that a
// signature Parse accepts is 64 bytes.
func FuzzParse(f *testing.F) {
	a := SignAt(testKey("a"), digestA, time.Time{})
	f.Add(a.Key, a.Signature, a.Digest)
	f.Add("ed25519:", "", "")
	f.Add("ed25519:"+a.Key[8:40], a.Signature[:50], digestB)
	f.Fuzz(func(t *testing.T, key, sig, digest string) {
		p, err := Attestation{Key: key, Signature: sig, Digest: digest}.Parse()
		if err != nil {
			return
		}
		if len(p.Signature) != 64 || len(p.Key) != 32 {
			t.Fatalf("Parse accepted a %d-byte signature, %d-byte key", len(p.Signature), len(p.Key))
		}
		_ = p.Valid()
	})
}
