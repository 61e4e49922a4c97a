package api

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"time"
)

// Secret is a secret the node holds, as listed: its name and where it
// comes from, never its value.
type Secret struct {
	Name string `json:"name"`
	// Source is "config" (the node config's secrets) or "store" (set at
	// run time with andromeda secrets set).
	Source string `json:"source"`
	// Updated is when a stored secret was last set; zero for config.
	Updated time.Time `json:"updated,omitzero"`
}

// The sources of a Secret.
const (
	SecretFromConfig = "config"
	SecretFromStore  = "store"
)

// Secrets lists the node's secrets (operator only).
func (c *Client) Secrets(ctx context.Context) ([]Secret, error) {
	var out []Secret
	err := c.getJSON(ctx, "/v1/secrets", &out)
	return out, err
}

// SetSecret sets a secret's value (operator only); it takes effect at
// once, without a restart.
func (c *Client) SetSecret(ctx context.Context, name string, value []byte) error {
	return c.do(ctx, http.MethodPut, "/v1/secrets/"+url.PathEscape(name), "application/octet-stream", bytes.NewReader(value), nil)
}

// DeleteSecret removes a secret set at run time (operator only).
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/secrets/"+url.PathEscape(name), "", nil, nil)
}
