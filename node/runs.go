package node

import (
	"context"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/server"
)

// Runs implements server.Backend: one page of the runs of a service, of
// every service for an operator, or of a submitter's own services merged;
// newest first in the order they were recorded, q.Cursor going on from an
// earlier page.
func (n *Node) Runs(ctx context.Context, p server.Principal, service string, q api.RunQuery) (api.RunList, error) {
	if service != "" {
		if _, err := n.owned(ctx, p, service); err != nil {
			return api.RunList{}, err
		}
		return apiRunList(n.store.ListServiceRuns(ctx, runQuery(q), service))
	}
	if p.Operator() {
		return apiRunList(n.store.ListRuns(ctx, runQuery(q)))
	}
	svcs, err := n.Services(ctx, p)
	if err != nil {
		return api.RunList{}, err
	}
	names := make([]string, len(svcs))
	for i, s := range svcs {
		names[i] = s.Name
	}
	return apiRunList(n.store.ListServiceRuns(ctx, runQuery(q), names...))
}

// Run implements server.Backend: one run of a service by id, in any record
// the store keeps.
func (n *Node) Run(ctx context.Context, p server.Principal, service, id string) (api.Run, error) {
	if _, err := n.owned(ctx, p, service); err != nil {
		return api.Run{}, err
	}
	r, err := n.store.Run(ctx, service, id)
	if err != nil {
		return api.Run{}, err
	}
	ar := apiRun(r)
	if ar.UsageRecord, err = n.usageRecord(r); err != nil {
		return api.Run{}, err
	}
	es, err := n.store.Executions(ctx, service, id)
	if err != nil {
		return api.Run{}, err
	}
	ar.Executions = apiExecutions(es)
	return ar, nil
}
