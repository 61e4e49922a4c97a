package node

import (
	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/store"
)

// The node keeps services and runs as the store's records and answers
// with the API's types: these functions are the one place one becomes the
// other, so the stored format and the wire can change apart.

// apiRun is a run record as the API shows it.
func apiRun(r store.Run) api.Run {
	return api.Run{
		ID:         r.ID,
		Service:    r.Service,
		Version:    r.Version,
		Owner:      r.Owner,
		Trigger:    r.Trigger,
		Node:       r.Node,
		Start:      r.Start,
		Duration:   r.Duration,
		Outcome:    r.Outcome,
		Output:     r.Output,
		Noop:       r.Noop,
		Error:      r.Error,
		Usage:      api.Usage(r.Usage),
		Attempts:   r.Attempts,
		Truncated:  r.Truncated,
		Input:      r.Input,
		InputBytes: r.InputBytes,
		Emitted:    apiEmitted(r.Emitted),
		Revision:   r.Revision,
	}
}

// apiRunList is a page of run records as the API shows it.
func apiRunList(l store.RunList, err error) (api.RunList, error) {
	if err != nil {
		return api.RunList{}, err
	}
	runs := make([]api.Run, len(l.Runs))
	for i, r := range l.Runs {
		runs[i] = apiRun(r)
	}
	return api.RunList{Runs: runs, Next: l.Next}, nil
}

// runQuery is an API run query as the store takes it.
func runQuery(q api.RunQuery) store.RunQuery {
	return store.RunQuery{Limit: q.Limit, Cursor: q.Cursor, Since: q.Since, Until: q.Until}
}

// apiService is a service record as the API shows it, without the health
// and triggers only a deployment knows (see Node.view).
func apiService(s store.Service) api.Service {
	return api.Service{
		Name:         s.Name,
		Version:      s.Version,
		Digest:       s.Digest,
		Size:         s.Size,
		Files:        s.Files,
		Manifest:     s.Manifest,
		Owner:        s.Owner,
		SubmittedAt:  s.SubmittedAt,
		Target:       s.Target,
		Decision:     s.Decision,
		Receipt:      s.Receipt,
		Forwarded:    s.Forwarded,
		Phase:        recordPhase(s),
		Status:       s.Status,
		StatusDetail: s.StatusDetail,
		Revision:     s.Revision,
		ConfigDigest: s.ConfigDigest,
	}
}

// apiExecutions is a run's executions as the API shows them.
func apiExecutions(es []store.Execution) []api.Execution {
	out := make([]api.Execution, len(es))
	for i, e := range es {
		x := api.Execution{
			Key: e.Key, Actions: e.Actions, Kind: e.Kind, Target: e.Target, Digest: e.Digest,
			State: e.State, Attempts: e.Attempts, Error: e.Error, Endpoint: e.Endpoint,
			Updated: e.Updated, NextRetry: e.Next,
		}
		if e.Response != nil {
			x.Status, x.Response, x.Sequence = e.Response.Status, e.Response.Body, e.Response.Seq
		}
		if e.Kind == "submit" {
			x.Envelope = string(e.Request)
		}
		out[i] = x
	}
	return out
}
