package node

import (
	"context"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/server"
)

// Runs implements server.Backend.
func (n *Node) Runs(ctx context.Context, p server.Principal, service string, limit int) ([]api.Run, error) {
	if service != "" {
		if _, err := n.Service(ctx, p, service); err != nil {
			return nil, err
		}
		return n.store.Runs(ctx, service, limit)
	}
	if p.Operator() {
		return n.store.RecentRuns(ctx, limit)
	}
	// A submitter's runs across its services, newest first.
	svcs, err := n.Services(ctx, p)
	if err != nil {
		return nil, err
	}
	var all []api.Run
	for _, s := range svcs {
		rs, err := n.store.Runs(ctx, s.Name, limit)
		if err != nil {
			return nil, err
		}
		all = append(all, rs...)
	}
	sortRuns(all)
	if limit <= 0 {
		limit = 20
	}
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

// Run implements server.Backend.
func (n *Node) Run(ctx context.Context, p server.Principal, service, id string) (api.Run, error) {
	if _, err := n.Service(ctx, p, service); err != nil {
		return api.Run{}, err
	}
	return n.store.Run(ctx, service, id)
}

func sortRuns(v []api.Run) {
	slices.SortFunc(v, func(a, b api.Run) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
}
