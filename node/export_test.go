package node

import (
	"context"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/store"
)

// ReplaceDriver makes n use d instead of the driver of the same name. Call
// before Start.
func ReplaceDriver(n *Node, d sandbox.Driver) { n.testDrivers = append(n.testDrivers, d) }

// ServiceState reads the state of service from n's store, with the ids of
// the runs that wrote its newest revisions.
func ServiceState(ctx context.Context, n *Node, service string) (store.Snapshot, error) {
	return n.store.State(ctx, service)
}
