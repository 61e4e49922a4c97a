package envelope

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

func testEnvelope() Envelope {
	return Envelope{
		Service: "vault-bot", Version: "1.2.0", RunID: "01J00000000000000000000000", Target: "vault-7",
		Actions: []json.RawMessage{
			json.RawMessage(`{"fn": "mint_binary", "amount": 250.0, "side": "yes"}`),
			json.RawMessage(`{"fn":"mint_range","amount":1e2,"lo":0.25,"hi":0.75}`),
		},
		Created: time.Date(2026, 12, 2, 4, 30, 0, 120_000_000, time.FixedZone("CET", 3600)),
	}
}

func TestCanonicalEnvelope(t *testing.T) {
	got, err := Canonical(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"actions":[{"amount":250,"fn":"mint_binary","side":"yes"},{"amount":100,"fn":"mint_range","hi":0.75,"lo":0.25}],` +
		`"created":"2026-12-02T03:30:00.12Z","run_id":"01J00000000000000000000000","service":"vault-bot","target":"vault-7","version":"1.2.0"}`
	if string(got) != want {
		t.Errorf("Canonical =\n%s\nwant\n%s", got, want)
	}
	// The same intent, written otherwise, gives the same bytes.
	e := testEnvelope()
	e.Actions = []json.RawMessage{
		json.RawMessage("{\n  \"side\": \"yes\",\n  \"amount\": 250,\n  \"fn\": \"mint_binary\"\n}"),
		json.RawMessage(`{"lo":25e-2,"hi":0.750,"amount":100,"fn":"mint_range"}`),
	}
	e.Created = e.Created.UTC()
	if again, err := Canonical(e); err != nil || !bytes.Equal(again, got) {
		t.Errorf("Canonical of the same intent = %s, %v; want %s", again, err, got)
	}
}

func TestCanonicalEnvelopeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Envelope)
		want   string
		kind   error
	}{
		{"no service", func(e *Envelope) { e.Service = "" }, "service: required", ErrInvalid},
		{"no target", func(e *Envelope) { e.Target = "" }, "target: required", ErrInvalid},
		{"bad UTF-8", func(e *Envelope) { e.RunID = "\xff" }, "run_id: invalid UTF-8", ErrInvalid},
		{"no time", func(e *Envelope) { e.Created = time.Time{} }, "created: required", ErrInvalid},
		{"year 10000", func(e *Envelope) { e.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "created: year 10000", ErrInvalid},
		{"no actions", func(e *Envelope) { e.Actions = nil }, "actions: at least one", ErrInvalid},
		{"huge amount", func(e *Envelope) { e.Actions[1] = json.RawMessage(`{"amount":1e999}`) }, "actions[1].amount: number 1e999 is beyond", ErrJSON},
		{"not JSON", func(e *Envelope) { e.Actions[0] = json.RawMessage(`{"amount":}`) }, "actions[0].amount: unexpected '}'", ErrJSON},
		{"empty action", func(e *Envelope) { e.Actions[0] = nil }, "actions[0]: unexpected end of input", ErrJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEnvelope()
			tc.change(&e)
			out, err := Canonical(e)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.kind) {
				t.Fatalf("Canonical = %s, %v; want %v containing %q", out, err, tc.kind, tc.want)
			}
		})
	}
}

func TestDigestAndKeyID(t *testing.T) {
	if got, want := Digest([]byte("abc")), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("Digest(abc) = %s, want %s", got, want)
	}
	// RFC 8032's test 1 public key.
	pub, _ := base64.StdEncoding.DecodeString("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	if got := KeyID(pub); len(got) != 16 || strings.Trim(got, "0123456789abcdef") != "" {
		t.Errorf("KeyID = %q, want 16 hex digits", got)
	}
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func TestSealVerify(t *testing.T) {
	key := newKey(t)
	e := testEnvelope()
	s, err := Seal(e, key)
	if err != nil {
		t.Fatal(err)
	}
	canon, _ := Canonical(e)
	if s.Digest != Digest(canon) || s.KeyID != KeyID(key.Public().(ed25519.PublicKey)) {
		t.Errorf("Seal = digest %s key %s; want %s %s", s.Digest, s.KeyID, Digest(canon), KeyID(key.Public().(ed25519.PublicKey)))
	}
	// The body is itself canonical, and holds the canonical envelope as
	// it is.
	if again, err := CanonicalJSON(s.Body); err != nil || !bytes.Equal(again, s.Body) {
		t.Errorf("the body is not canonical: %s", s.Body)
	}
	if !bytes.Contains(s.Body, append(append([]byte(`"envelope":`), canon...), ',')) {
		t.Errorf("the body does not hold the canonical envelope: %s", s.Body)
	}
	// A receiver decodes it with nothing but encoding/json and
	// crypto/ed25519.
	var wire struct {
		Envelope  json.RawMessage `json:"envelope"`
		Digest    string          `json:"digest"`
		Signature struct {
			PublicKey string `json:"public_key"`
			Value     string `json:"value"`
		} `json:"signature"`
	}
	if err := json.Unmarshal(s.Body, &wire); err != nil {
		t.Fatal(err)
	}
	pub, _ := base64.StdEncoding.DecodeString(wire.Signature.PublicKey)
	raw, _ := base64.StdEncoding.DecodeString(wire.Signature.Value)
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, wire.Envelope, raw) || wire.Digest != s.Digest {
		t.Errorf("the body does not verify by hand: %s", s.Body)
	}

	for name, verify := range map[string]func([]byte) (Envelope, error){
		"Verify":     Verify,
		"VerifyFrom": func(b []byte) (Envelope, error) { return VerifyFrom(b, key.Public().(ed25519.PublicKey)) },
	} {
		got, err := verify(s.Body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if again, _ := Canonical(got); !bytes.Equal(again, canon) || !got.Created.Equal(e.Created) || got.Target != e.Target {
			t.Errorf("%s = %+v, want %+v", name, got, e)
		}
	}
	// Re-indented on the way, it still verifies.
	var pretty bytes.Buffer
	json.Indent(&pretty, s.Body, "", "    ")
	if _, err := Verify(pretty.Bytes()); err != nil {
		t.Errorf("Verify of the re-indented body: %v", err)
	}
}

// TestVerifyTampered: a changed envelope, digest or signature, another
// key, or a body that is not one, does not verify.
func TestVerifyTampered(t *testing.T) {
	key, other := newKey(t), newKey(t)
	s, err := Seal(testEnvelope(), key)
	if err != nil {
		t.Fatal(err)
	}
	otherSealed, _ := Seal(testEnvelope(), other)
	body := string(s.Body)
	sigValue := func(b string) string {
		_, v, _ := strings.Cut(b, `"value":"`)
		v, _, _ = strings.Cut(v, `"`)
		return v
	}
	flip := func(b64 string) string {
		raw, _ := base64.StdEncoding.DecodeString(b64)
		raw[10] ^= 1
		return base64.StdEncoding.EncodeToString(raw)
	}
	otherPub := base64.StdEncoding.EncodeToString(other.Public().(ed25519.PublicKey))
	myPub := base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	for _, tc := range []struct {
		name string
		body string
		kind error
		want string
	}{
		{"amount changed", strings.Replace(body, `"amount":250`, `"amount":2500`, 1), ErrDigest, "digest sha256:"},
		{"amount and digest changed", func() string {
			b := strings.Replace(body, `"amount":250`, `"amount":2500`, 1)
			e := testEnvelope()
			e.Actions[0] = json.RawMessage(`{"fn": "mint_binary", "amount": 2500, "side": "yes"}`)
			c, _ := Canonical(e)
			return strings.Replace(b, s.Digest, Digest(c), 1)
		}(), ErrSignature, "signature does not verify"},
		{"signature changed", strings.Replace(body, sigValue(body), flip(sigValue(body)), 1), ErrSignature, "signature does not verify"},
		{"other key's signature", strings.Replace(body, sigValue(body), sigValue(string(otherSealed.Body)), 1), ErrSignature, "signature does not verify"},
		{"other public key", strings.Replace(body, myPub, otherPub, 1), ErrInvalid, "signature.key_id"},
		{"other alg", strings.Replace(body, `"alg":"ed25519"`, `"alg":"rsa"`, 1), ErrInvalid, `signature.alg: "rsa"`},
		{"extra member", strings.Replace(body, `{"digest"`, `{"note":1,"digest"`, 1), ErrInvalid, "note: unknown member"},
		{"no signature", body[:strings.Index(body, `,"signature"`)] + "}", ErrInvalid, "signature: required"},
		{"not JSON", body[:40], ErrJSON, "digest: unterminated string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Verify([]byte(tc.body))
			if err == nil || !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %+v, %v; want %v containing %q\nbody: %s", e, err, tc.kind, tc.want, tc.body)
			}
		})
	}
	// Well signed, by a key the receiver does not trust.
	if _, err := VerifyFrom(otherSealed.Body, key.Public().(ed25519.PublicKey)); !errors.Is(err, ErrOtherKey) {
		t.Errorf("VerifyFrom(body signed by another key) = %v, want ErrOtherKey", err)
	}
	// An envelope whose created time is not in UTC, correctly signed,
	// is refused: Canonical would not write it so.
	c, _ := Canonical(testEnvelope())
	odd := bytes.Replace(c, []byte(`"2026-12-02T03:30:00.12Z"`), []byte(`"2026-12-02T04:30:00.12+01:00"`), 1)
	sig := ed25519.Sign(key, odd)
	b := `{"digest":"` + Digest(odd) + `","envelope":` + string(odd) + `,"signature":{"alg":"ed25519","key_id":"` + s.KeyID +
		`","public_key":"` + myPub + `","value":"` + base64.StdEncoding.EncodeToString(sig) + `"}}`
	if _, err := Verify([]byte(b)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "created") {
		t.Errorf("Verify(created not in UTC) = %v, want ErrInvalid about created", err)
	}
}

// notEd25519 is a signer of another kind.
type notEd25519 struct{ ed25519.PrivateKey }

func (notEd25519) Public() crypto.PublicKey { return "rsa" }

func TestSealRefuses(t *testing.T) {
	if _, err := Seal(testEnvelope(), notEd25519{newKey(t)}); err == nil || !strings.Contains(err.Error(), "not ed25519") {
		t.Errorf("Seal with a non-ed25519 signer = %v", err)
	}
	e := testEnvelope()
	e.Actions[1] = json.RawMessage(`{"amount":1e999}`)
	if _, err := Seal(e, newKey(t)); err == nil || !strings.Contains(err.Error(), "actions[1].amount") {
		t.Errorf("Seal of an envelope with a huge amount = %v", err)
	}
}

func BenchmarkSeal(b *testing.B) {
	key, _ := func() (ed25519.PrivateKey, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}()
	e := testEnvelope()
	for b.Loop() {
		if _, err := Seal(e, key); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyWithNodeJS: a receiver written in another language checks a
// sealed body with its own JSON and ed25519: Node.js re-serializes the
// envelope member with JSON.stringify (which, for a canonical document
// whose names are not array indexes, writes JCS) and verifies the
// signature with node:crypto.
func TestVerifyWithNodeJS(t *testing.T) {
	nodejs, err := exec.LookPath("node")
	sandboxtest.Require(t, err == nil, "node (Node.js) is needed as an independent receiver")
	e := testEnvelope()
	e.Actions = append(e.Actions, json.RawMessage(`{"memo":"é\u0001€😀","n":[1e21,1e-7,-0.5,333333333.33333329]}`))
	s, err := Seal(e, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nodejs, "-e", `
const crypto = require("crypto");
const body = JSON.parse(require("fs").readFileSync(0, "utf8"));
const data = Buffer.from(JSON.stringify(body.envelope), "utf8");
const der = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(body.signature.public_key, "base64")]);
const key = crypto.createPublicKey({key: der, format: "der", type: "spki"});
const digest = "sha256:" + crypto.createHash("sha256").update(data).digest("hex");
const ok = crypto.verify(null, data, key, Buffer.from(body.signature.value, "base64"));
console.log(ok && digest === body.digest ? "verified" : "refused " + digest);`)
	cmd.Stdin = bytes.NewReader(s.Body)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "verified" {
		t.Fatalf("node: %v: %s\nbody: %s", err, out, s.Body)
	}
}

// FuzzVerify: Verify never panics, and what it accepts is an envelope
// whose canonical form has the digest the body claims.
func FuzzVerify(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s, err := Seal(testEnvelope(), key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Body)
	f.Add(bytes.Replace(s.Body, []byte(`250`), []byte(`251`), 1))
	f.Add([]byte(`{"digest":"","envelope":{},"signature":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := Verify(body)
		if err != nil {
			return
		}
		c, err := Canonical(e)
		if err != nil {
			t.Fatalf("Verify accepted %q, whose envelope Canonical refuses: %v", body, err)
		}
		var top struct {
			Digest string `json:"digest"`
		}
		if json.Unmarshal(body, &top) != nil || top.Digest != Digest(c) {
			t.Fatalf("Verify accepted %q, digest %q, but its envelope's is %s", body, top.Digest, Digest(c))
		}
	})
}
