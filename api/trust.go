package api

import (
	"context"

	"github.com/andromeda-runner/andromeda/attest"
)

// Revoke sends the node a revocation of a delegation (POST
// /v1/trust/revocations); any token may. The node checks its signature and
// honours it from its next decision on.
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
