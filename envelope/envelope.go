// Package envelope holds the signed form of a run's submit actions: the
// Envelope, its canonical JSON by RFC 8785 (JCS), its digest, and the
// sealed body the node POSTs to a target's endpoint, signed with ed25519,
// with Verify for receivers. CanonicalJSON is the JCS encoder itself, for
// any JSON document.
//
// It holds no keys and does no I/O: a Seal gets a crypto.Signer (package
// keys holds the node's keys, one per target), and what is done with the
// body, sending it, retrying, recording it, is the executor's. Standard
// library only.
//
// # The sealed body
//
//	{"digest":"sha256:<hex>",
//	 "envelope":{"actions":[…],"created":"…","run_id":"…","service":"…","target":"…","version":"…"},
//	 "signature":{"alg":"ed25519","key_id":"<16 hex>","public_key":"<base64>","value":"<base64>"}}
//
// all of it in canonical form (written here on several lines). The digest
// is the SHA-256 of the envelope's canonical bytes, the signature is
// ed25519 over those same bytes (not over the digest), base64 is the
// standard alphabet with padding, and key_id is the first 16 hex digits of
// the SHA-256 of the 32-byte public key. A receiver re-canonicalizes the
// envelope member before checking, so a proxy that re-indents the body does
// not break it; but it must check that public_key is one it trusts
// (VerifyFrom), since anyone can sign an envelope with a key of their own.
package envelope

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

var (
	// ErrJSON marks a document CanonicalJSON cannot read, or a value in it
	// JCS cannot represent (the error is a *PathError naming where).
	ErrJSON = errors.New("not canonicalizable JSON")
	// ErrInvalid marks an Envelope, or a body given to Verify, missing a
	// field or holding one of the wrong kind.
	ErrInvalid = errors.New("invalid envelope")
	// ErrDigest marks a body whose digest is not its envelope's.
	ErrDigest = errors.New("digest does not match the envelope")
	// ErrSignature marks a body whose signature does not verify.
	ErrSignature = errors.New("signature does not verify")
	// ErrOtherKey marks a body signed with another key than the one
	// VerifyFrom trusts.
	ErrOtherKey = errors.New("signed with another key")
)

// Alg is the signature algorithm, the only one there is.
const Alg = "ed25519"

// Envelope is what one run asks of one target: the params of each of its
// submit actions for that target, in the order the run returned them.
type Envelope struct {
	Service, Version, RunID, Target string
	// Actions are the params of each submit action, JSON; Canonical
	// re-encodes each canonically, so the same intent gives the same
	// bytes whatever the service's member order or spacing.
	Actions []json.RawMessage
	// Created is when the envelope was made; it is written in UTC, in RFC
	// 3339 with as many fractional digits as it needs (time.RFC3339Nano).
	Created time.Time
}

// Canonical returns e's canonical JSON, the bytes that are digested and
// signed: an object with members actions, created, run_id, service, target
// and version, in JCS form. Service, version, run id and target must be
// non-empty valid UTF-8, Created non-zero and in years 1 to 9999, and there must be at least one
// action; an action JCS cannot represent is refused with its path
// (`actions[1].amount: ...`).
func Canonical(e Envelope) ([]byte, error) {
	v, err := e.value()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	write(&b, v)
	return b.Bytes(), nil
}

func (e Envelope) value() (value, error) {
	for _, f := range []struct{ name, v string }{
		{"service", e.Service}, {"version", e.Version}, {"run_id", e.RunID}, {"target", e.Target},
	} {
		switch {
		case f.v == "":
			return nil, fmt.Errorf("%w: %s: required", ErrInvalid, f.name)
		case !utf8.ValidString(f.v):
			return nil, fmt.Errorf("%w: %s: invalid UTF-8", ErrInvalid, f.name)
		}
	}
	if e.Created.IsZero() {
		return nil, fmt.Errorf("%w: created: required", ErrInvalid)
	}
	if y := e.Created.UTC().Year(); y < 1 || y > 9999 {
		return nil, fmt.Errorf("%w: created: year %d is not one RFC 3339 can write (1 to 9999)", ErrInvalid, y)
	}
	if len(e.Actions) == 0 {
		return nil, fmt.Errorf("%w: actions: at least one submit action is required", ErrInvalid)
	}
	actions := make([]value, len(e.Actions))
	for i, a := range e.Actions {
		v, err := parse(a, fmt.Sprintf("actions[%d]", i))
		if err != nil {
			return nil, err
		}
		actions[i] = v
	}
	return object{
		{"service", e.Service},
		{"version", e.Version},
		{"run_id", e.RunID},
		{"target", e.Target},
		{"actions", actions},
		{"created", e.Created.UTC().Format(time.RFC3339Nano)},
	}, nil
}

// Digest is the digest of canonical bytes: "sha256:" and 64 lower-case hex
// digits.
func Digest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// KeyID names a public key: the first 16 hex digits of the SHA-256 of its
// 32 bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sealed is a signed envelope ready to send.
type Sealed struct {
	// Body is what is POSTed: the canonical envelope, its digest and its
	// signature (see the package documentation), itself in canonical form.
	Body []byte
	// Digest is the envelope's digest, as in Body.
	Digest string
	// KeyID names the key that signed it, as in Body.
	KeyID string
}

// Seal signs e's canonical bytes with s, whose public key must be ed25519
// (keys.Key is one; so is an ed25519.PrivateKey), and returns the body to
// send. It checks the signature it got before returning it.
func Seal(e Envelope, s crypto.Signer) (Sealed, error) {
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return Sealed{}, fmt.Errorf("seal: the signer's key is %T, not ed25519", s.Public())
	}
	canon, err := Canonical(e)
	if err != nil {
		return Sealed{}, fmt.Errorf("seal: %w", err)
	}
	sig, err := s.Sign(rand.Reader, canon, crypto.Hash(0))
	if err != nil {
		return Sealed{}, fmt.Errorf("seal: sign: %w", err)
	}
	if !ed25519.Verify(pub, canon, sig) {
		return Sealed{}, fmt.Errorf("seal: %w: the signer's signature does not verify with its own public key", ErrSignature)
	}
	out := Sealed{Digest: Digest(canon), KeyID: KeyID(pub)}
	var b bytes.Buffer
	write(&b, object{
		{"digest", out.Digest},
		{"envelope", raw(canon)},
		{"signature", object{
			{"alg", Alg},
			{"key_id", out.KeyID},
			{"public_key", base64.StdEncoding.EncodeToString(pub)},
			{"value", base64.StdEncoding.EncodeToString(sig)},
		}},
	})
	out.Body = b.Bytes()
	return out, nil
}

// Verify reads a sealed body and checks it: its envelope is well formed,
// its digest is the envelope's and its signature verifies with the public
// key it names (whose key_id it must match). It does not say whether that
// key is one to trust: a receiver that knows its sender's key uses
// VerifyFrom. The returned envelope's actions are in canonical form.
func Verify(body []byte) (Envelope, error) {
	e, _, err := verify(body)
	return e, err
}

// VerifyFrom is Verify, and the body must be signed with pub.
func VerifyFrom(body []byte, pub ed25519.PublicKey) (Envelope, error) {
	e, signer, err := verify(body)
	if err != nil {
		return Envelope{}, err
	}
	if !signer.Equal(pub) {
		return Envelope{}, fmt.Errorf("verify: %w: key %s, want %s", ErrOtherKey, KeyID(signer), KeyID(pub))
	}
	return e, nil
}

func verify(body []byte) (Envelope, ed25519.PublicKey, error) {
	v, err := parse(body, "")
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("verify: %w", err)
	}
	top, err := members(v, "", "digest", "envelope", "signature")
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("verify: %w", err)
	}
	var canon bytes.Buffer
	write(&canon, top["envelope"])
	digest, err := str(top, "", "digest")
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("verify: %w", err)
	}
	if want := Digest(canon.Bytes()); digest != want {
		return Envelope{}, nil, fmt.Errorf("verify: %w: digest %s, the envelope's is %s", ErrDigest, digest, want)
	}
	pub, err := checkSignature(top["signature"], canon.Bytes())
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("verify: %w", err)
	}
	e, err := decodeEnvelope(top["envelope"])
	if err != nil {
		return Envelope{}, nil, fmt.Errorf("verify: %w", err)
	}
	// What Canonical writes of e must be what was signed: a created time
	// in another zone or form would not survive a round trip.
	if again, err := Canonical(e); err != nil || !bytes.Equal(again, canon.Bytes()) {
		return Envelope{}, nil, fmt.Errorf("verify: %w: envelope: not in the form Canonical writes (created must be RFC 3339 in UTC)", ErrInvalid)
	}
	return e, pub, nil
}

func checkSignature(v value, canon []byte) (ed25519.PublicKey, error) {
	sig, err := members(v, "signature", "alg", "key_id", "public_key", "value")
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for _, name := range []string{"alg", "key_id", "public_key", "value"} {
		if fields[name], err = str(sig, "signature", name); err != nil {
			return nil, err
		}
	}
	if fields["alg"] != Alg {
		return nil, fmt.Errorf("%w: signature.alg: %q, want %q", ErrInvalid, fields["alg"], Alg)
	}
	pub, err := base64.StdEncoding.DecodeString(fields["public_key"])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: signature.public_key: want the standard base64 of %d bytes", ErrInvalid, ed25519.PublicKeySize)
	}
	if id := KeyID(pub); fields["key_id"] != id {
		return nil, fmt.Errorf("%w: signature.key_id: %q, the public key's is %q", ErrInvalid, fields["key_id"], id)
	}
	s, err := base64.StdEncoding.DecodeString(fields["value"])
	if err != nil || len(s) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature.value: want the standard base64 of %d bytes", ErrInvalid, ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, canon, s) {
		return nil, fmt.Errorf("%w (key %s)", ErrSignature, fields["key_id"])
	}
	return pub, nil
}

func decodeEnvelope(v value) (Envelope, error) {
	m, err := members(v, "envelope", "service", "version", "run_id", "target", "actions", "created")
	if err != nil {
		return Envelope{}, err
	}
	var e Envelope
	for _, f := range []struct {
		name string
		p    *string
	}{{"service", &e.Service}, {"version", &e.Version}, {"run_id", &e.RunID}, {"target", &e.Target}} {
		if *f.p, err = str(m, "envelope", f.name); err != nil {
			return Envelope{}, err
		}
	}
	created, err := str(m, "envelope", "created")
	if err != nil {
		return Envelope{}, err
	}
	if e.Created, err = time.Parse(time.RFC3339Nano, created); err != nil {
		return Envelope{}, fmt.Errorf("%w: envelope.created: %q is not an RFC 3339 time", ErrInvalid, created)
	}
	actions, ok := m["actions"].([]value)
	if !ok {
		return Envelope{}, fmt.Errorf("%w: envelope.actions: want an array", ErrInvalid)
	}
	for _, a := range actions {
		var b bytes.Buffer
		write(&b, a)
		e.Actions = append(e.Actions, b.Bytes())
	}
	return e, nil
}

// members returns the members of the object v at path at, which must be
// exactly names.
func members(v value, at string, names ...string) (map[string]value, error) {
	where := at
	if where == "" {
		where = "(root)"
	}
	obj, ok := v.(object)
	if !ok {
		return nil, fmt.Errorf("%w: %s: want an object", ErrInvalid, where)
	}
	out := make(map[string]value, len(obj))
	for _, m := range obj {
		out[m.name] = m.v
	}
	for _, m := range obj {
		if !slices.Contains(names, m.name) {
			return nil, fmt.Errorf("%w: %s: unknown member", ErrInvalid, join(at, m.name))
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("%w: %s: required", ErrInvalid, join(at, n))
		}
	}
	return out, nil
}

// str is the string member name of m, the object at at.
func str(m map[string]value, at, name string) (string, error) {
	s, ok := m[name].(string)
	if !ok {
		return "", fmt.Errorf("%w: %s: want a string", ErrInvalid, join(at, name))
	}
	return s, nil
}
