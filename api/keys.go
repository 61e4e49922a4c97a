package api

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/url"
	"time"
)

// Key is one of the node's signing keys, one per submit target, as the
// key management API shows it: never its private half, which stays in the
// node's data dir.
type Key struct {
	Target string `json:"target"`
	// KeyID is the first 16 hex digits of the SHA-256 of the public key,
	// as a sealed envelope's signature.key_id names it.
	KeyID string `json:"key_id"`
	// PublicKey is the 32-byte ed25519 public key, what a target's
	// endpoint checks envelopes with. In JSON it is the standard, padded
	// base64 of the bytes, as in a sealed envelope's signature.public_key.
	PublicKey ed25519.PublicKey `json:"public_key"`
	Created   time.Time         `json:"created"`
}

// CreateKey makes a new signing key for target (operator only); it fails
// with 409 when target has one.
func (c *Client) CreateKey(ctx context.Context, target string) (Key, error) {
	var k Key
	return k, c.do(ctx, http.MethodPost, "/v1/keys/"+url.PathEscape(target), "", nil, &k)
}

// Keys lists the node's signing keys by target (operator only).
func (c *Client) Keys(ctx context.Context) ([]Key, error) {
	var out []Key
	return out, c.getJSON(ctx, "/v1/keys", &out)
}

// Key describes target's signing key (operator only).
func (c *Client) Key(ctx context.Context, target string) (Key, error) {
	var k Key
	return k, c.getJSON(ctx, "/v1/keys/"+url.PathEscape(target), &k)
}

// RemoveKey deletes target's signing key (operator only). Envelopes it
// signed still verify with its public key; the node signs no more for
// target until a key is created again.
func (c *Client) RemoveKey(ctx context.Context, target string) error {
	return c.do(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(target), "", nil, nil)
}
