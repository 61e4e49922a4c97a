package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// Runs implements server.Backend: one page of the runs of a service, of
// every service for an operator, or of a submitter's own services merged;
// newest first in the order they were recorded, q.Cursor going on from an
// earlier page.
func (n *Node) Runs(ctx context.Context, p server.Principal, service string, q api.RunQuery) (api.RunList, error) {
	if service != "" {
		mine, err := n.runsOf(ctx, p, service)
		if err != nil {
			return api.RunList{}, err
		}
		return mine(apiRunList(n.store.ListServiceRuns(ctx, runQuery(q), service)))
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
	return ownRuns(p)(apiRunList(n.store.ListServiceRuns(ctx, runQuery(q), names...)))
}

// ownRuns is the filter of a page of runs for submitter p: the runs p
// owned when they ran. A name removed and submitted again by another
// keeps the first owner's runs (rm keeps them for their retention): they
// stay the first owner's.
func ownRuns(p server.Principal) func(api.RunList, error) (api.RunList, error) {
	return func(l api.RunList, err error) (api.RunList, error) {
		mine := l.Runs[:0]
		for _, r := range l.Runs {
			if r.Owner == p.Name {
				mine = append(mine, r)
			}
		}
		l.Runs = mine
		return l, err
	}
}

// Run implements server.Backend: one run of a service by id, in any record
// the store keeps.
func (n *Node) Run(ctx context.Context, p server.Principal, service, id string) (api.Run, error) {
	if _, err := n.runsOf(ctx, p, service); err != nil {
		return api.Run{}, err
	}
	r, err := n.store.Run(ctx, service, id)
	if err != nil {
		return api.Run{}, err
	}
	if !p.Operator() && r.Owner != p.Name {
		return api.Run{}, fmt.Errorf("run %s: %w", id, store.ErrNotFound)
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

// runsOf says whether p may read service's runs and returns the filter
// of a page for p. A registered service's runs are its owner's and the
// operator's; a removed service's runs stay (rm keeps them for the runs'
// retention) and each is its recorded owner's and the operator's.
func (n *Node) runsOf(ctx context.Context, p server.Principal, service string) (func(api.RunList, error) (api.RunList, error), error) {
	_, err := n.owned(ctx, p, service)
	if p.Operator() && (err == nil || errors.Is(err, store.ErrNotFound)) {
		return func(l api.RunList, err error) (api.RunList, error) { return l, err }, nil
	}
	if err == nil {
		return ownRuns(p), nil
	}
	if p.Operator() {
		return nil, err
	}
	if _, gone := n.store.Service(ctx, service); !errors.Is(gone, store.ErrNotFound) {
		return nil, err // another's registered service: not found
	}
	return ownRuns(p), nil
}
