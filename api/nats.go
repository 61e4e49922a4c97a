package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// NATSUserRequest is the body of POST /v1/nats/users.
type NATSUserRequest struct {
	// Name is the NATS user name, [a-z0-9][a-z0-9-]{0,62}.
	Name string `json:"name"`
	// Owner is the namespace the credential publishes in (topics
	// OWNER.…, besides the public topics); "operator" publishes on every
	// topic. Default: Name.
	Owner string `json:"owner,omitempty"`
}

// NATSUser is a credential for a NATS client of the node's embedded
// server: user Name, password Secret (shown once, when created).
type NATSUser struct {
	Name    string    `json:"name"`
	Owner   string    `json:"owner"`
	Secret  string    `json:"secret,omitempty"`
	Created time.Time `json:"created"`
	// Publish lists the subjects it may publish on now.
	Publish []string `json:"publish"`
	// Server is the URL NATS clients connect to, empty when the node's
	// server does not listen (nats.listen).
	Server string `json:"server,omitempty"`
}

// CreateNATSUser issues a credential for a NATS client (operator). The
// secret is in the answer only.
func (c *Client) CreateNATSUser(ctx context.Context, name, owner string) (NATSUser, error) {
	var r NATSUser
	return r, c.postJSON(ctx, "/v1/nats/users", NATSUserRequest{Name: name, Owner: owner}, &r)
}

// NATSUsers lists the credentials issued, by name, without their secrets
// (operator).
func (c *Client) NATSUsers(ctx context.Context) ([]NATSUser, error) {
	var r []NATSUser
	return r, c.getJSON(ctx, "/v1/nats/users", &r)
}

// RemoveNATSUser removes a credential: it cannot connect again, and its
// open connections are closed (operator).
func (c *Client) RemoveNATSUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/nats/users/"+url.PathEscape(name), "", nil, nil)
}
