package node

import (
	"context"
	"encoding/json"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/server"
)

// State implements server.StateBackend: the state of a service p may see.
func (n *Node) State(ctx context.Context, p server.Principal, name string) (api.State, error) {
	if _, err := n.owned(ctx, p, name); err != nil {
		return api.State{}, err
	}
	snap, err := n.store.State(ctx, name)
	if err != nil {
		return api.State{}, err
	}
	st := api.State{Service: name, Revision: snap.Revision, Writers: snap.Writers, Values: snap.Values}
	if st.Writers == nil {
		st.Writers = []string{}
	}
	if st.Values == nil {
		st.Values = map[string]json.RawMessage{}
	}
	return st, nil
}
