package api

import (
	"context"
	"encoding/json"
	"net/url"
)

// State answers GET /v1/services/{name}/state: the service's state object
// as its runs see it.
type State struct {
	Service string `json:"service"`
	// Revision is the state's revision; 0 before the first write.
	Revision uint64 `json:"revision"`
	// Writers are the ids of the runs that wrote the newest revisions,
	// oldest first: every committed revision names its run.
	Writers []string                   `json:"writers"`
	Values  map[string]json.RawMessage `json:"values"`
}

// State reads a service's state (its owner or the operator).
func (c *Client) State(ctx context.Context, service string) (State, error) {
	var s State
	return s, c.getJSON(ctx, "/v1/services/"+url.PathEscape(service)+"/state", &s)
}
