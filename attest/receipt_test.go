package attest

import (
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzDecodeReceiptHeader feeds arbitrary values to DecodeReceiptHeader (a
// forwarded submission's header): no panic; a receipt it decodes encodes
// and decodes again, and verifies only if it was signed.
func FuzzDecodeReceiptHeader(f *testing.F) {
	signed := SignReceipt(testKey("node"), Receipt{Service: "s", Version: "1.0.0", Verdict: "forward", ForwardTo: "http://b:7070", RedirectDepth: 2, Path: []string{"http://a:7070"}, Submitter: "alice"})
	f.Add(EncodeReceiptHeader(signed))
	f.Add(EncodeReceiptHeader(Receipt{Verdict: "run"}))
	f.Add("eyJzZXJ2aWNlIjoxfQ==")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		r, err := DecodeReceiptHeader(v)
		if err != nil || r == nil {
			return
		}
		again, err := DecodeReceiptHeader(EncodeReceiptHeader(*r))
		if err != nil {
			t.Fatalf("round trip of %+v: %v", r, err)
		}
		if (VerifyReceipt(*r) == nil) != (VerifyReceipt(*again) == nil) {
			t.Fatalf("the round trip changed whether %+v verifies", r)
		}
	})
}

// TestReceiptHeader: a signed forwarding receipt survives the header and
// verifies; any change to it does not; a bad header names itself.
func TestReceiptHeader(t *testing.T) {
	r := SignReceipt(testKey("node"), Receipt{Service: "s", Version: "1.0.0", ServiceDigest: "sha256:" + strings.Repeat("a", 64), Verdict: "forward", ForwardTo: "http://b:7070", RedirectDepth: 1, Path: []string{"http://a:7070"}, Submitter: "alice", DecidedAt: t0})
	got, err := DecodeReceiptHeader(EncodeReceiptHeader(r))
	if err != nil || VerifyReceipt(*got) != nil || got.ForwardTo != r.ForwardTo || got.RedirectDepth != 1 || got.Submitter != "alice" {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	for _, change := range []func(*Receipt){
		func(r *Receipt) { r.ForwardTo = "http://c:7070" },
		func(r *Receipt) { r.RedirectDepth = 3 },
		func(r *Receipt) { r.Path = nil },
		func(r *Receipt) { r.ServiceDigest = "sha256:" + strings.Repeat("b", 64) },
	} {
		c := *got
		change(&c)
		if VerifyReceipt(c) == nil {
			t.Errorf("a changed receipt verifies: %+v", c)
		}
	}
	for _, bad := range []string{"!!", "e30=x", base64Std(`{"verdict":"run","extra":1}`)} {
		if _, err := DecodeReceiptHeader(bad); err == nil || !strings.Contains(err.Error(), ForwardHeaderName) {
			t.Errorf("DecodeReceiptHeader(%q) = %v, want an error naming the header", bad, err)
		}
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
