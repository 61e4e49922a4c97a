package attest

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func testKey(name string) PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return NewKeyFromSeed(seed[:])
}

var at = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func TestKeyText(t *testing.T) {
	pub, priv := GenerateKey()
	gotPub, err := ParsePublicKey(" " + pub.String() + "\n")
	if err != nil || !gotPub.Equal(pub) {
		t.Fatalf("ParsePublicKey(%q) = %v, %v; want %v", pub.String(), gotPub, err, pub)
	}
	gotPriv, err := ParsePrivateKey(priv.String())
	if err != nil || !gotPriv.Public().Equal(pub) {
		t.Fatalf("ParsePrivateKey: %v, %v", gotPriv, err)
	}
	if len(pub.String()) != 52 {
		t.Errorf("len(%q) = %d, want 52", pub.String(), len(pub.String()))
	}
	var k PublicKey
	if err := k.UnmarshalText([]byte(pub.String())); err != nil || !k.Equal(pub) {
		t.Errorf("UnmarshalText = %v, %v", k, err)
	}
}

func TestParseKeyErrors(t *testing.T) {
	pub := testKey("a").Public().String()
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", `must start with "ed25519:"`},
		{"other type", "rsa:AAAA", `key type "rsa:", want "ed25519:"`},
		{"private as public", testKey("a").String(), `key type "ed25519-private:"`},
		{"not base64", "ed25519:!!!!", "not base64"},
		{"truncated", pub[:40], "24 bytes, want 32"},
		{"truncated mid-quantum", pub[:41], "not base64"},
		{"short", "ed25519:" + base64.StdEncoding.EncodeToString(make([]byte, 31)), "31 bytes, want 32"},
		{"long", "ed25519:" + base64.StdEncoding.EncodeToString(make([]byte, 33)), "33 bytes, want 32"},
		{"base58", "WoD3FV8ByzerAUUCZ5rF58aTLpz5kTNxHnyBS5vzuqeq", `must start with "ed25519:"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePublicKey(tc.in)
			if err == nil || !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePublicKey(%q) = %v, want ErrKey containing %q", tc.in, err, tc.want)
			}
		})
	}
	if _, err := ParsePrivateKey(pub); err == nil {
		t.Errorf("ParsePrivateKey(public key) = nil error")
	}
}

func TestSignVerify(t *testing.T) {
	priv := testKey("hub")
	a := SignAt(priv, digestA, at)
	if err := Verify(a, digestA); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	noTime := SignAt(priv, digestA, time.Time{})
	if err := Verify(noTime, digestA); err != nil || !noTime.SignedAt.IsZero() {
		t.Fatalf("Verify(without signed_at) = %v", err)
	}
	if a := Sign(priv, digestA); Verify(a, digestA) != nil || a.SignedAt.IsZero() {
		t.Fatalf("Sign: %+v does not verify", a)
	}

	sig, _ := base64.StdEncoding.DecodeString(a.Signature)
	flipped := append([]byte(nil), sig...)
	flipped[10] ^= 1
	moved := a
	moved.SignedAt = at.Add(time.Second)
	for _, tc := range []struct {
		name string
		mod  func(Attestation) Attestation
		want error
		text string
	}{
		{"other digest", func(a Attestation) Attestation { return a }, ErrOtherDigest, "digest: signed another digest"},
		{"digest field changed", func(a Attestation) Attestation { a.Digest = digestB; return a }, ErrInvalid, "signature: signature does not verify"},
		{"bit flipped", func(a Attestation) Attestation {
			a.Digest = digestB
			a.Signature = base64.StdEncoding.EncodeToString(flipped)
			return a
		}, ErrInvalid, "signature does not verify"},
		{"signed_at changed", func(Attestation) Attestation { m := moved; m.Digest = digestB; return m }, ErrInvalid, "does not verify"},
		{"truncated", func(a Attestation) Attestation { a.Signature = a.Signature[:40]; return a }, ErrMalformed, "signature: malformed: truncated: 30 bytes, want 64"},
		{"truncated mid-quantum", func(a Attestation) Attestation { a.Signature = a.Signature[:41]; return a }, ErrMalformed, "signature: malformed: not base64"},
		{"short", func(a Attestation) Attestation {
			a.Signature = base64.StdEncoding.EncodeToString(sig[:48])
			return a
		}, ErrMalformed, "truncated: 48 bytes, want 64"},
		{"not base64", func(a Attestation) Attestation { a.Signature = "%%%%"; return a }, ErrMalformed, "not base64: input byte 0"},
		{"empty signature", func(a Attestation) Attestation { a.Signature = ""; return a }, ErrMalformed, "signature: malformed: empty"},
		{"bad key", func(a Attestation) Attestation { a.Key = "ed25519:xyz"; return a }, ErrKey, "key: malformed key"},
		{"bad digest", func(a Attestation) Attestation { a.Digest = "md5:00"; return a }, ErrMalformed, "digest: malformed"},
		{"other key", func(a Attestation) Attestation {
			a.Key = testKey("mallory").Public().String()
			a.Digest = digestB
			return a
		}, ErrInvalid, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mod(a)
			target := digestB
			err := Verify(b, target)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("Verify = %v, want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	as := []Attestation{SignAt(testKey("a"), digestA, at), SignAt(testKey("b"), digestA, time.Time{})}
	h := EncodeHeader(as)
	if strings.ContainsAny(h, "+/= \n") {
		t.Errorf("EncodeHeader = %q, not unpadded base64url", h)
	}
	got, err := DecodeHeader(h)
	if err != nil || !reflect.DeepEqual(got, as) {
		t.Fatalf("DecodeHeader(EncodeHeader(as)) = %v, %v; want %v", got, err, as)
	}
	if got, err := DecodeHeader(h + "=="); err != nil || len(got) != 2 {
		t.Errorf("DecodeHeader(padded) = %v, %v", got, err)
	}
	if EncodeHeader(nil) != "" {
		t.Errorf("EncodeHeader(nil) != \"\"")
	}
	if got, err := DecodeHeader(""); err != nil || got != nil {
		t.Errorf("DecodeHeader(\"\") = %v, %v", got, err)
	}
}

func TestDecodeHeaderErrors(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	many := "[" + strings.Repeat(`{"key":"","digest":"","signature":""},`, MaxAttestations) + `{"key":"","digest":"","signature":""}]`
	for _, tc := range []struct{ name, in, want string }{
		{"not base64", "***", "Andromeda-Attestations header: not base64url: input byte 0"},
		{"not json", enc("nope"), "attestations: json syntax: line 1, column 2: invalid character 'o'"},
		{"object", enc(`{"key":"x"}`), "attestations: must be a list, not a mapping"},
		{"unknown field", enc(`[{"key":"x","digest":"d","signature":"s"},{"key":"x","sig":"s"}]`), `attestations[1].sig: unknown field "sig"`},
		{"wrong type", enc(`[{"key":1}]`), "attestations[0].key: must be a string (quote 1 to make it one)"},
		{"null entry", enc(`[null]`), "attestations[0]: must be an object"},
		{"bad time", enc(`[{"key":"x","signed_at":"yesterday"}]`), "attestations[0]: parsing time"},
		{"trailing", enc(`[] []`), "attestations: json syntax: line 1, column 4: trailing data after the document"},
		{"too many", enc(many), "65 entries, at most 64"},
		{"too long", strings.Repeat("A", MaxEncoded+1), "must be at most 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeHeader(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeHeader = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestDecodeKeepsMalformedSignatures(t *testing.T) {
	a := SignAt(testKey("a"), digestA, at)
	a.Signature = a.Signature[:21]
	got, err := DecodeHeader(EncodeHeader([]Attestation{a}))
	if err != nil || len(got) != 1 {
		t.Fatalf("DecodeHeader = %v, %v; a malformed signature must reach policy", got, err)
	}
	err = Check(got)
	if err == nil || !strings.Contains(err.Error(), "attestations[0].signature: malformed: not base64") {
		t.Errorf("Check = %v", err)
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	if as, err := ReadDir(dir); err != nil || as != nil {
		t.Fatalf("ReadDir(empty dir) = %v, %v", as, err)
	}
	a1 := SignAt(testKey("b"), digestA, at)
	a2 := SignAt(testKey("a"), digestA, at)
	a1again := SignAt(testKey("b"), digestB, at)
	for _, a := range []Attestation{a1, a2, a1again} {
		if err := AddToDir(dir, a); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Attestation{a2, a1again}
	if a1again.Key < a2.Key {
		want = []Attestation{a1again, a2}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadDir = %v, want %v (sorted by key, one per key)", got, want)
	}
	name := filepath.Join(dir, FileName)
	if err := os.WriteFile(name, []byte(`{"attestations":[{"key":"k","digest":"d","signature":"s","extra":1}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDir(dir); err == nil || !strings.Contains(err.Error(), `attestations[0].extra: unknown field "extra"`) || !strings.Contains(err.Error(), name) {
		t.Errorf("ReadDir(unknown field) = %v", err)
	}
	for in, want := range map[string]string{
		`{}`:                          "attestations: missing",
		`{"attestations":[],"x":1}`:   `x: unknown field "x"`,
		`{"attestations":"no"}`:       "attestations: must be a list, not a string",
		``:                            "must not be empty",
		`{"attestations":[]} garbage`: "json syntax: line 1, column 21: trailing data after the document",
	} {
		if _, err := DecodeFile([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeFile(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestReceipt(t *testing.T) {
	node := testKey("node")
	r := SignReceipt(node, Receipt{
		Service: "price-watch", Version: "1.2.0", ServiceDigest: digestA, PolicyDigest: digestB,
		Verdict: "run", Reasons: []Reason{{Rule: "keywords", OK: true, Detail: "defi accepted"}},
		DecidedAt: at.In(time.FixedZone("x", 3600)),
	})
	if r.NodeKey != node.Public().String() || r.DecidedAt.Location() != time.UTC {
		t.Errorf("SignReceipt: node_key %q, decided_at %v", r.NodeKey, r.DecidedAt)
	}
	if err := VerifyReceipt(r); err != nil {
		t.Fatalf("VerifyReceipt = %v", err)
	}
	tampered := r
	tampered.Verdict = "reject"
	if err := VerifyReceipt(tampered); !errors.Is(err, ErrInvalid) {
		t.Errorf("VerifyReceipt(tampered verdict) = %v, want ErrInvalid", err)
	}
	tampered = r
	tampered.Reasons = []Reason{{Rule: "keywords", OK: false, Detail: "defi accepted"}}
	if err := VerifyReceipt(tampered); !errors.Is(err, ErrInvalid) {
		t.Errorf("VerifyReceipt(tampered reason) = %v, want ErrInvalid", err)
	}
	tampered = r
	tampered.NodeKey = testKey("other").Public().String()
	if err := VerifyReceipt(tampered); !errors.Is(err, ErrInvalid) {
		t.Errorf("VerifyReceipt(other key) = %v, want ErrInvalid", err)
	}
	tampered = r
	tampered.Signature = "abc"
	if err := VerifyReceipt(tampered); !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "signature: ") {
		t.Errorf("VerifyReceipt(bad signature) = %v", err)
	}
}

func TestReceiptJSONRoundTrip(t *testing.T) {
	r := SignReceipt(testKey("node"), Receipt{Service: "s", Version: "1.0.0", ServiceDigest: digestA, PolicyDigest: digestB, Verdict: "reject", DecidedAt: at.Add(123456789)})
	data, err := jsonMarshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Receipt
	if err := jsonUnmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if err := VerifyReceipt(back); err != nil {
		t.Errorf("VerifyReceipt(decoded %s) = %v", data, err)
	}
}

func TestKeyFiles(t *testing.T) {
	name := filepath.Join(t.TempDir(), "hub.key")
	pub, err := WriteKeyPair(name)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := LoadPrivateKey(name)
	if err != nil || !priv.Public().Equal(pub) {
		t.Fatalf("LoadPrivateKey = %v, %v", priv, err)
	}
	if fi, _ := os.Stat(name); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	pubText, _ := os.ReadFile(name + ".pub")
	if k, err := ParsePublicKey(string(pubText)); err != nil || !k.Equal(pub) {
		t.Errorf("%s.pub = %q", name, pubText)
	}
	if _, err := WriteKeyPair(name); !errors.Is(err, os.ErrExist) {
		t.Errorf("WriteKeyPair over an existing key = %v, want ErrExist", err)
	}
	if _, err := LoadPrivateKey(name + ".pub"); err == nil || !strings.Contains(err.Error(), name+".pub: malformed key") {
		t.Errorf("LoadPrivateKey(public key file) = %v", err)
	}
}
