package attest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
)

// Bounds of a delegation.
const (
	// MaxDelegations is the most delegations one submission or
	// attestations file may carry.
	MaxDelegations = 32
	// MaxDelegationDepth is the largest max_depth a delegation may give.
	MaxDelegationDepth = 16
	// MaxScopeEntries is the most service patterns, and the most keywords,
	// a scope may list.
	MaxScopeEntries = 64
	// MaxRevocationSize is the largest encoded revocation DecodeRevocation
	// reads, in bytes.
	MaxRevocationSize = 4 << 10
)

// ErrExpired marks a delegation whose expiry is not after the time it is
// judged at.
var ErrExpired = errors.New("expired")

var (
	scopeServiceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}\*?$|^\*$`)
	scopeKeywordRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
)

// Scope is what a delegate may attest. Empty: whatever its parent may.
// A service is in scope when its name matches one of Services (when any are
// listed) and it carries one of Keywords (when any are listed). Down a
// chain every delegation's scope must hold, so a scope can only narrow.
type Scope struct {
	// Services are service names; a name ending in "*" matches every
	// name with that prefix, and "*" alone matches all.
	Services []string `json:"services,omitempty"`
	// Keywords: the service must carry at least one of them.
	Keywords []string `json:"keywords,omitempty"`
}

// IsZero reports whether s restricts nothing.
func (s Scope) IsZero() bool { return len(s.Services) == 0 && len(s.Keywords) == 0 }

// Contains reports whether the service named name with keywords is in s.
func (s Scope) Contains(name string, keywords []string) bool {
	if len(s.Services) > 0 {
		ok := false
		for _, p := range s.Services {
			if prefix, wild := strings.CutSuffix(p, "*"); wild && strings.HasPrefix(name, prefix) || p == name {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(s.Keywords) > 0 {
		for _, k := range keywords {
			for _, want := range s.Keywords {
				if k == want {
					return true
				}
			}
		}
		return false
	}
	return true
}

// String shows s for messages: "services [weather-*] keywords [maps]",
// "anything".
func (s Scope) String() string {
	var parts []string
	if len(s.Services) > 0 {
		parts = append(parts, "services ["+strings.Join(s.Services, ", ")+"]")
	}
	if len(s.Keywords) > 0 {
		parts = append(parts, "keywords ["+strings.Join(s.Keywords, ", ")+"]")
	}
	if len(parts) == 0 {
		return "anything"
	}
	return strings.Join(parts, " ")
}

// Delegation is a key's statement that another key's attestations count in
// its name, for a share of its weight. See the package documentation of
// the delegation text.
type Delegation struct {
	// Parent is the delegating key, "ed25519:<base64>"; it signs.
	Parent string `json:"parent"`
	// Delegate is the key trusted, "ed25519:<base64>".
	Delegate string `json:"delegate"`
	// Share is the part of the parent's weight the delegate counts for,
	// more than 0 and at most 1.
	Share float64 `json:"share"`
	// Scope is what the delegate may attest; empty: whatever the parent
	// may.
	Scope Scope `json:"scope,omitzero"`
	// MaxDepth is how many further levels below the delegate may be
	// delegated: 0 lets the delegate delegate nothing. 0 to
	// MaxDelegationDepth.
	MaxDepth int `json:"max_depth"`
	// IssuedAt is when the parent signed. Required.
	IssuedAt time.Time `json:"issued_at"`
	// Expires is when the delegation stops counting. Required, after
	// IssuedAt.
	Expires time.Time `json:"expires"`
	// Signature is the standard base64 of the parent's 64-byte signature.
	Signature string `json:"signature"`
}

// ParsedDelegation is a delegation whose fields parse; Valid checks its
// signature.
type ParsedDelegation struct {
	Parent, Delegate PublicKey
	Share            float64
	Scope            Scope
	MaxDepth         int
	IssuedAt         time.Time
	Expires          time.Time
	Signature        []byte
	// ID is the delegation's id, "sha256:<hex>".
	ID string
}

// Delegate returns the delegation d signed by priv: d's Parent is set to
// priv's public key, its times to UTC, its Signature to priv's signature.
// The error names the field of d that is not valid, as Parse does.
func Delegate(priv PrivateKey, d Delegation) (Delegation, error) {
	d.Parent = priv.Public().String()
	d.IssuedAt, d.Expires = d.IssuedAt.UTC(), d.Expires.UTC()
	d.Signature = base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	p, err := d.Parse()
	if err != nil {
		return Delegation{}, err
	}
	d.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(ed25519.PrivateKey(priv), p.message()))
	return d, nil
}

// Parse checks every field of d, without checking the signature. The error
// names the field: "parent: …", "share: …", "scope.services[1]: …",
// "expires: …", "signature: …".
func (d Delegation) Parse() (ParsedDelegation, error) {
	parent, err := ParsePublicKey(d.Parent)
	if err != nil {
		return ParsedDelegation{}, fmt.Errorf("parent: %w", err)
	}
	delegate, err := ParsePublicKey(d.Delegate)
	if err != nil {
		return ParsedDelegation{}, fmt.Errorf("delegate: %w", err)
	}
	if parent.Equal(delegate) {
		return ParsedDelegation{}, fmt.Errorf("delegate: %w: must not be the parent key", ErrMalformed)
	}
	if !(d.Share > 0 && d.Share <= 1) || math.IsNaN(d.Share) {
		return ParsedDelegation{}, fmt.Errorf("share: %w: must be more than 0 and at most 1", ErrMalformed)
	}
	if err := checkScope(d.Scope); err != nil {
		return ParsedDelegation{}, err
	}
	if d.MaxDepth < 0 || d.MaxDepth > MaxDelegationDepth {
		return ParsedDelegation{}, fmt.Errorf("max_depth: %w: must be from 0 to %d", ErrMalformed, MaxDelegationDepth)
	}
	switch {
	case d.IssuedAt.IsZero():
		return ParsedDelegation{}, fmt.Errorf("issued_at: %w: required", ErrMalformed)
	case d.Expires.IsZero():
		return ParsedDelegation{}, fmt.Errorf("expires: %w: required", ErrMalformed)
	case !d.Expires.After(d.IssuedAt):
		return ParsedDelegation{}, fmt.Errorf("expires: %w: must be after issued_at", ErrMalformed)
	}
	sig, err := ParseSignature(d.Signature)
	if err != nil {
		return ParsedDelegation{}, fmt.Errorf("signature: %w", err)
	}
	p := ParsedDelegation{
		Parent: parent, Delegate: delegate, Share: d.Share, Scope: d.Scope, MaxDepth: d.MaxDepth,
		IssuedAt: d.IssuedAt.UTC(), Expires: d.Expires.UTC(), Signature: sig,
	}
	sum := sha256.Sum256(p.message())
	p.ID = "sha256:" + hex.EncodeToString(sum[:])
	return p, nil
}

func checkScope(s Scope) error {
	for _, l := range []struct {
		name  string
		items []string
		re    *regexp.Regexp
		rule  string
	}{
		{"scope.services", s.Services, scopeServiceRE, "must be a service name, optionally ending in * to match a prefix"},
		{"scope.keywords", s.Keywords, scopeKeywordRE, "must be a keyword, [a-z0-9-]{1,32}"},
	} {
		if len(l.items) > MaxScopeEntries {
			return fmt.Errorf("%s: %w: at most %d entries", l.name, ErrMalformed, MaxScopeEntries)
		}
		for i, v := range l.items {
			if !l.re.MatchString(v) {
				return fmt.Errorf("%s[%d]: %w: %s", l.name, i, ErrMalformed, l.rule)
			}
		}
	}
	return nil
}

// message is the text the parent signs; the fields were checked by Parse,
// so none holds a newline or a comma.
func (p ParsedDelegation) message() []byte {
	return []byte("andromeda delegation v1\n" + p.Parent.String() + "\n" + p.Delegate.String() + "\n" +
		strconv.FormatFloat(p.Share, 'g', -1, 64) + "\n" +
		strings.Join(p.Scope.Services, ",") + "\n" + strings.Join(p.Scope.Keywords, ",") + "\n" +
		strconv.Itoa(p.MaxDepth) + "\n" + p.IssuedAt.Format(time.RFC3339Nano) + "\n" + p.Expires.Format(time.RFC3339Nano) + "\n")
}

// Valid reports whether p's signature by its parent verifies.
func (p ParsedDelegation) Valid() bool {
	return ed25519.Verify(ed25519.PublicKey(p.Parent), p.message(), p.Signature)
}

// VerifyDelegation checks that d parses, is signed by its parent and has
// not expired at now. The error names the field and wraps ErrKey,
// ErrMalformed, ErrInvalid or ErrExpired. It does not say whether the
// parent is trusted, nor whether d was revoked; that is policy's.
func VerifyDelegation(d Delegation, now time.Time) (ParsedDelegation, error) {
	p, err := d.Parse()
	if err != nil {
		return p, err
	}
	if !p.Valid() {
		return p, fmt.Errorf("signature: %w", ErrInvalid)
	}
	if !now.Before(p.Expires) {
		return p, fmt.Errorf("expires: %w at %s", ErrExpired, p.Expires.Format(time.RFC3339))
	}
	return p, nil
}

// ShortID returns "sha256:" and the first 12 hex digits of a delegation
// id, for messages.
func ShortID(id string) string { return ShortDigest(id) }

// Revocation withdraws a delegation, named by its id, from RevokedAt on.
type Revocation struct {
	// Delegation is the id of the delegation revoked, "sha256:<hex>".
	Delegation string `json:"delegation"`
	// Key is the revoking key, "ed25519:<base64>"; it signs.
	Key string `json:"key"`
	// RevokedAt is when the revocation takes effect. Required.
	RevokedAt time.Time `json:"revoked_at"`
	// Signature is the standard base64 of the 64-byte signature.
	Signature string `json:"signature"`
}

// Revoke returns priv's revocation of the delegation id, from at on.
func Revoke(priv PrivateKey, id string, at time.Time) (Revocation, error) {
	if err := CheckDigest(id); err != nil {
		return Revocation{}, fmt.Errorf("delegation: %w", err)
	}
	at = at.UTC()
	if at.IsZero() {
		return Revocation{}, fmt.Errorf("revoked_at: %w: required", ErrMalformed)
	}
	sig := ed25519.Sign(ed25519.PrivateKey(priv), revocationMessage(id, at))
	return Revocation{Delegation: id, Key: priv.Public().String(), RevokedAt: at, Signature: base64.StdEncoding.EncodeToString(sig)}, nil
}

func revocationMessage(id string, at time.Time) []byte {
	return []byte("andromeda revocation v1\n" + id + "\n" + at.UTC().Format(time.RFC3339Nano) + "\n")
}

// Verify checks that r parses and its signature verifies, returning its
// key. The error names the field and wraps ErrKey, ErrMalformed or
// ErrInvalid.
func (r Revocation) Verify() (PublicKey, error) {
	if err := CheckDigest(r.Delegation); err != nil {
		return nil, fmt.Errorf("delegation: %w", err)
	}
	key, err := ParsePublicKey(r.Key)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if r.RevokedAt.IsZero() {
		return nil, fmt.Errorf("revoked_at: %w: required", ErrMalformed)
	}
	sig, err := ParseSignature(r.Signature)
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if !ed25519.Verify(ed25519.PublicKey(key), revocationMessage(r.Delegation, r.RevokedAt), sig) {
		return nil, fmt.Errorf("signature: %w", ErrInvalid)
	}
	return key, nil
}

// DecodeRevocation decodes one revocation strictly (no unknown field, at
// most MaxRevocationSize bytes) and verifies it. Errors name the field:
// "revoked_at: …", "signature: signature does not verify".
func DecodeRevocation(data []byte) (Revocation, error) {
	if len(data) > MaxRevocationSize {
		return Revocation{}, fmt.Errorf("revocation: must be at most %d bytes", MaxRevocationSize)
	}
	var r Revocation
	if err := strictjson.Unmarshal(data, &r); err != nil {
		return Revocation{}, err
	}
	r.RevokedAt = r.RevokedAt.UTC()
	if _, err := r.Verify(); err != nil {
		return Revocation{}, err
	}
	return r, nil
}
