// Package attest holds ed25519 keys and the two things signed with them: a
// trusted hub's attestation that it reviewed a service's canonical digest,
// and a node's receipt of an admission decision; also delegations (a key
// letting another key's attestations count in its name) and their
// revocations. It defines their text and JSON forms, the attestations file
// a service directory carries (.andromeda/attestations.json), and the HTTP
// headers that carry attestations and delegations beside a submitted
// archive.
//
// It does not decide whom to trust or how many signatures are enough (that is
// policy), does not compute digests (that is archive) and does no network
// I/O. It imports only the standard library and strictdoc/strictjson,
// itself standard library only.
//
// # Keys
//
// A public key is written "ed25519:" followed by the standard, padded base64
// of its 32 bytes (52 characters in all). A private key is written
// "ed25519-private:" followed by the standard, padded base64 of its 32-byte
// seed. Both forms are what MarshalText writes and ParsePublicKey and
// ParsePrivateKey read; surrounding white space is ignored, nothing else is.
//
// # Attestations
//
// An attestation is the JSON object
//
//	{"key": "ed25519:…", "digest": "sha256:…", "signature": "…", "signed_at": "2025-01-02T03:04:05Z"}
//
// signature is the standard, padded base64 of the 64-byte ed25519 signature
// of the message
//
//	"andromeda attestation v1\n" + digest + "\n" + signed_at + "\n"
//
// where signed_at is the time in UTC in RFC 3339 with as many fractional
// digits as needed (time.RFC3339Nano), or empty when the attestation has no
// signed_at. The digest is part of the attestation so that a signature over
// another version of a service is told apart from a forged one.
//
// # Delegations and revocations
//
// A trusted hub may let another key vouch in its name, and take that back.
//
// A delegation is the JSON object
//
//	{"parent": "ed25519:…", "delegate": "ed25519:…", "share": 0.5,
//	 "scope": {"services": ["weather-*"], "keywords": ["maps"]},
//	 "max_depth": 1, "issued_at": "2026-01-02T03:04:05Z",
//	 "expires": "2026-02-01T03:04:05Z", "signature": "…"}
//
// signed by parent's key over the message
//
//	"andromeda delegation v1\n" + parent + "\n" + delegate + "\n" + share + "\n" +
//	services joined by "," + "\n" + keywords joined by "," + "\n" +
//	max_depth + "\n" + issued_at + "\n" + expires + "\n"
//
// with share in Go's shortest 'g' form (strconv.FormatFloat(share, 'g',
// -1, 64)), max_depth in decimal and the times in UTC RFC 3339 with as many
// fractional digits as needed. A delegation's id is "sha256:" and the hex
// sha256 of that message: it names the delegation in revocations and
// reasons, and does not depend on the signature.
//
// A revocation is the JSON object
//
//	{"delegation": "sha256:…", "key": "ed25519:…", "revoked_at": "…", "signature": "…"}
//
// signed by key over "andromeda revocation v1\n" + delegation + "\n" +
// revoked_at + "\n". Who may revoke (the delegation's parent or a key above
// it in the tree) is policy's to judge; this package only says whether the
// signature verifies.
//
// # Where attestations travel
//
// `andromeda attest DIR --key K` adds an attestation to DIR/FileName
// (.andromeda/attestations.json, which packing skips, so attesting never
// changes the digest attested); `andromeda submit DIR` sends them beside
// the archive in the HeaderName request header (EncodeHeader, DecodeHeader).
// Delegations travel the same way: in the same file (`andromeda attest
// delegate` adds them) and in the DelegationsHeaderName header.
// Revocations reach a node through its API (POST /v1/trust/revocations).
package attest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Text prefixes of keys.
const (
	PublicPrefix  = "ed25519:"
	PrivatePrefix = "ed25519-private:"
)

var (
	// ErrKey marks a key that does not parse.
	ErrKey = errors.New("malformed key")
	// ErrMalformed marks an attestation or receipt field that does not
	// parse: a signature that is not base64 or not 64 bytes, a digest that
	// is not sha256:<64 hex digits>.
	ErrMalformed = errors.New("malformed")
	// ErrOtherDigest marks an attestation over another digest than the one
	// being checked.
	ErrOtherDigest = errors.New("signed another digest")
	// ErrInvalid marks a well-formed signature that does not verify.
	ErrInvalid = errors.New("signature does not verify")
)

// PublicKey is an ed25519 public key, 32 bytes.
type PublicKey ed25519.PublicKey

// PrivateKey is an ed25519 private key, as crypto/ed25519 holds it (seed
// followed by public key, 64 bytes).
type PrivateKey ed25519.PrivateKey

// GenerateKey returns a new key pair from crypto/rand.
func GenerateKey() (PublicKey, PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		// crypto/rand.Reader does not fail on supported platforms.
		panic("attest: generate key: " + err.Error())
	}
	return PublicKey(pub), PrivateKey(priv)
}

// NewKeyFromSeed returns the private key of a 32-byte seed; it panics on
// another length, as ed25519.NewKeyFromSeed does. Tests use it for
// reproducible keys.
func NewKeyFromSeed(seed []byte) PrivateKey {
	return PrivateKey(ed25519.NewKeyFromSeed(seed))
}

// String returns the key as "ed25519:<base64>".
func (k PublicKey) String() string {
	return PublicPrefix + base64.StdEncoding.EncodeToString(k)
}

// Short returns the key's prefix and the first 8 base64 characters, for
// messages: "ed25519:AbCdEfGh…".
func (k PublicKey) Short() string {
	s := k.String()
	if len(s) > len(PublicPrefix)+8 {
		return s[:len(PublicPrefix)+8] + "…"
	}
	return s
}

// Equal reports whether k and o are the same key.
func (k PublicKey) Equal(o PublicKey) bool { return string(k) == string(o) }

// MarshalText returns String.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a key; see ParsePublicKey.
func (k *PublicKey) UnmarshalText(text []byte) error {
	v, err := ParsePublicKey(string(text))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParsePublicKey parses "ed25519:<base64 of 32 bytes>".
func ParsePublicKey(s string) (PublicKey, error) {
	b, err := parseKey(s, PublicPrefix, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return PublicKey(b), nil
}

// Public returns the public half of k.
func (k PrivateKey) Public() PublicKey {
	return PublicKey(ed25519.PrivateKey(k).Public().(ed25519.PublicKey))
}

// String returns the key as "ed25519-private:<base64 of the seed>". Treat
// it as a secret.
func (k PrivateKey) String() string {
	return PrivatePrefix + base64.StdEncoding.EncodeToString(ed25519.PrivateKey(k).Seed())
}

// MarshalText returns String.
func (k PrivateKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a key; see ParsePrivateKey.
func (k *PrivateKey) UnmarshalText(text []byte) error {
	v, err := ParsePrivateKey(string(text))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParsePrivateKey parses "ed25519-private:<base64 of the 32-byte seed>".
func ParsePrivateKey(s string) (PrivateKey, error) {
	seed, err := parseKey(s, PrivatePrefix, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return NewKeyFromSeed(seed), nil
}

func parseKey(s, prefix string, size int) ([]byte, error) {
	s = strings.TrimSpace(s)
	body, ok := strings.CutPrefix(s, prefix)
	if !ok {
		if i := strings.IndexByte(s, ':'); i > 0 && i < 32 {
			return nil, fmt.Errorf("%w: key type %q, want %q", ErrKey, s[:i+1], prefix)
		}
		return nil, fmt.Errorf("%w: must start with %q", ErrKey, prefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", ErrKey, trimB64(err))
	}
	if len(b) != size {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrKey, len(b), size)
	}
	return b, nil
}

// trimB64 shortens base64's error text ("illegal base64 data at input byte
// 3") to its useful part.
func trimB64(err error) string {
	return strings.TrimPrefix(err.Error(), "illegal base64 data at ")
}

// Attestation is a signer's statement that it reviewed the service whose
// canonical digest is Digest. See the package documentation for the signed
// message.
type Attestation struct {
	// Key is the signer's public key, "ed25519:<base64>".
	Key string `json:"key"`
	// Digest is the canonical digest signed, "sha256:<64 hex digits>".
	Digest string `json:"digest"`
	// Signature is the standard base64 of the 64-byte signature.
	Signature string `json:"signature"`
	// SignedAt is when the signer signed; part of the signed message.
	// Optional.
	SignedAt time.Time `json:"signed_at,omitzero"`
}

// Sign returns priv's attestation of digest, signed now (to the second).
func Sign(priv PrivateKey, digest string) Attestation {
	return SignAt(priv, digest, time.Now().UTC().Truncate(time.Second))
}

// SignAt returns priv's attestation of digest with SignedAt at; a zero at
// leaves SignedAt out.
func SignAt(priv PrivateKey, digest string, at time.Time) Attestation {
	if !at.IsZero() {
		at = at.UTC()
	}
	sig := ed25519.Sign(ed25519.PrivateKey(priv), message(digest, at))
	return Attestation{
		Key:       priv.Public().String(),
		Digest:    digest,
		Signature: base64.StdEncoding.EncodeToString(sig),
		SignedAt:  at,
	}
}

func message(digest string, at time.Time) []byte {
	ts := ""
	if !at.IsZero() {
		ts = at.UTC().Format(time.RFC3339Nano)
	}
	return []byte("andromeda attestation v1\n" + digest + "\n" + ts + "\n")
}

// Parsed is an attestation whose fields parse; Valid checks its signature.
type Parsed struct {
	Key       PublicKey
	Digest    string
	Signature []byte // 64 bytes
	SignedAt  time.Time
}

// Parse checks that every field of a parses, without checking the
// signature. The error names the field: "key: …", "signature: …",
// "digest: …", and wraps ErrKey or ErrMalformed.
func (a Attestation) Parse() (Parsed, error) {
	key, err := ParsePublicKey(a.Key)
	if err != nil {
		return Parsed{}, fmt.Errorf("key: %w", err)
	}
	sig, err := ParseSignature(a.Signature)
	if err != nil {
		return Parsed{}, fmt.Errorf("signature: %w", err)
	}
	if err := CheckDigest(a.Digest); err != nil {
		return Parsed{}, fmt.Errorf("digest: %w", err)
	}
	return Parsed{Key: key, Digest: a.Digest, Signature: sig, SignedAt: a.SignedAt}, nil
}

// Valid reports whether p's signature verifies over p's digest and time.
func (p Parsed) Valid() bool {
	return ed25519.Verify(ed25519.PublicKey(p.Key), message(p.Digest, p.SignedAt), p.Signature)
}

// Verify checks that a parses, is over digest and verifies. The error names
// the field and wraps ErrKey, ErrMalformed, ErrOtherDigest or ErrInvalid.
// Verify does not say whether a's key is trusted; that is policy's.
func Verify(a Attestation, digest string) error {
	p, err := a.Parse()
	if err != nil {
		return err
	}
	if p.Digest != digest {
		return fmt.Errorf("digest: %w: %s, not %s", ErrOtherDigest, ShortDigest(p.Digest), ShortDigest(digest))
	}
	if !p.Valid() {
		return fmt.Errorf("signature: %w", ErrInvalid)
	}
	return nil
}

// ParseSignature decodes the standard, padded base64 of a 64-byte ed25519
// signature. The error wraps ErrMalformed and says whether the text is not
// base64, truncated (shorter than 64 bytes) or too long.
func ParseSignature(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %s", ErrMalformed, trimB64(err))
	}
	switch {
	case len(b) < ed25519.SignatureSize:
		return nil, fmt.Errorf("%w: truncated: %d bytes, want %d", ErrMalformed, len(b), ed25519.SignatureSize)
	case len(b) > ed25519.SignatureSize:
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(b), ed25519.SignatureSize)
	}
	return b, nil
}

// CheckDigest reports whether d is "sha256:" followed by 64 lowercase hex
// digits, the form of archive's canonical digest.
func CheckDigest(d string) error {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 || strings.IndexFunc(hex, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f')
	}) >= 0 {
		return fmt.Errorf("%w: must be sha256: and 64 lowercase hex digits", ErrMalformed)
	}
	return nil
}

// ShortDigest returns "sha256:" and the first 12 hex digits of d, for
// messages; other strings are returned as they are.
func ShortDigest(d string) string {
	if len(d) > len("sha256:")+12 && strings.HasPrefix(d, "sha256:") {
		return d[:len("sha256:")+12] + "…"
	}
	return d
}

// WriteKeyPair generates a key pair and writes the private key to name
// (mode 0600, refusing to overwrite an existing file) and the public key to
// name + ".pub" (mode 0644), each as its text and a newline. It is what
// `andromeda keys gen` does.
func WriteKeyPair(name string) (PublicKey, error) {
	pub, priv := GenerateKey()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if _, err := f.WriteString(priv.String() + "\n"); err != nil {
		f.Close()
		os.Remove(name)
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	if err := os.WriteFile(name+".pub", []byte(pub.String()+"\n"), 0o644); err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("key file %s.pub: %w", name, err)
	}
	return pub, nil
}

// LoadPrivateKey reads a private key file written by WriteKeyPair (its text,
// surrounding white space ignored). Errors name the file.
func LoadPrivateKey(name string) (PrivateKey, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4<<10))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	k, err := ParsePrivateKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	return k, nil
}
