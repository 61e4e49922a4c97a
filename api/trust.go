package api

import (
	"context"

	"github.com/andromeda-runner/andromeda/attest"
)

// Revoke sends the node a revocation of a delegation (POST
// /v1/trust/revocations). Any token may send one signed by a trusted hub
// of the node's policy; one signed by another key (a delegate revoking a
// sub-delegation) needs the operator's token (403 otherwise). The node
// checks its signature and honours it from its next decision on. It keeps
// the earliest revoked_at of one key's revocations of one delegation, and
// returns the revocation it holds: when that is dated earlier than r, r
// changed nothing.
func (c *Client) Revoke(ctx context.Context, r attest.Revocation) (attest.Revocation, error) {
	var out attest.Revocation
	return out, c.postJSON(ctx, "/v1/trust/revocations", r, &out)
}

// Revocations lists the revocations the node holds (GET
// /v1/trust/revocations).
func (c *Client) Revocations(ctx context.Context) ([]attest.Revocation, error) {
	var out []attest.Revocation
	return out, c.getJSON(ctx, "/v1/trust/revocations", &out)
}
