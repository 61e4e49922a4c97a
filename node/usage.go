package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/usage"
)

// The node answers usage questions (GET /v1/usage).
var _ server.UsageBackend = (*Node)(nil)

// DefaultUsageWindow is the period of a usage question that names no since.
const DefaultUsageWindow = 24 * time.Hour

// usageRecord returns run's usage record signed with the node key
// (package usage), or nil for a run that never reached a driver. Records
// are signed when asked for, not when the run is recorded: ed25519
// signatures are deterministic, so the same run record gives the same
// bytes every time, and recording a run pays nothing for them.
func (n *Node) usageRecord(run store.Run) (json.RawMessage, error) {
	if run.Driver == "" {
		return nil, nil
	}
	b, err := usage.Sign(usage.Record{
		Service: run.Service, Version: run.Version, Digest: run.Digest, RunID: run.ID,
		Trigger: run.Trigger.Kind, Start: run.Start, Outcome: run.Outcome, Driver: run.Driver,
		WallNS: run.Usage.WallNS, CPUNS: run.Usage.CPUNS, PeakMemory: run.Usage.PeakMemory, MemoryScope: run.Usage.MemoryScope,
		Counters: run.Usage.Counters, CountersDropped: run.Usage.CountersDropped,
		NetworkRx: run.Usage.NetworkRx, NetworkTx: run.Usage.NetworkTx,
	}, ed25519.PrivateKey(n.key))
	if err != nil {
		return nil, fmt.Errorf("usage record of run %s: %w", run.ID, err)
	}
	return b, nil
}

// Usage implements server.UsageBackend: the signed usage records of
// service's runs since since (zero: the last DefaultUsageWindow), newest
// first, and their totals, at most api.MaxUsageRecords of them. The owner
// or the operator may ask; a removed service's records stay readable to
// the operator for as long as its run history is kept.
func (n *Node) Usage(ctx context.Context, p server.Principal, service string, since time.Time) (api.UsageReport, error) {
	_, err := n.owned(ctx, p, service)
	if err != nil && !(p.Operator() && errors.Is(err, store.ErrNotFound)) {
		return api.UsageReport{}, err
	}
	// The operator may ask about a removed service whose runs are kept; a
	// name without service or runs is not found.
	missing := err
	now := time.Now().UTC()
	if since.IsZero() {
		since = now.Add(-DefaultUsageWindow)
	}
	rep := api.UsageReport{Service: service, Since: since.UTC(), Until: now, NodeKey: n.key.Public().String(),
		Records: []json.RawMessage{}, Totals: api.UsageTotals{Counters: map[string]float64{}}}
	q := store.RunQuery{Since: since, Limit: store.MaxListRuns}
	for {
		page, err := n.store.ListServiceRuns(ctx, q, service)
		if err != nil {
			return api.UsageReport{}, err
		}
		for _, r := range page.Runs {
			if !p.Operator() && r.Owner != p.Name {
				continue // a reused name's runs of its earlier owner
			}
			if r.Driver == "" {
				rep.Unsigned++
				continue
			}
			if len(rep.Records) == api.MaxUsageRecords {
				rep.Truncated = true
				return rep, nil
			}
			rec, err := n.usageRecord(r)
			if err != nil {
				return api.UsageReport{}, err
			}
			rep.Records = append(rep.Records, rec)
			t := &rep.Totals
			t.Runs++
			t.WallNS += r.Usage.WallNS
			t.CPUNS += r.Usage.CPUNS
			t.CountersDropped += r.Usage.CountersDropped
			t.NetworkRx += r.Usage.NetworkRx
			t.NetworkTx += r.Usage.NetworkTx
			for k, v := range r.Usage.Counters {
				t.Counters[k] += v
			}
		}
		if page.Next == "" {
			if missing != nil && len(rep.Records) == 0 && rep.Unsigned == 0 {
				return api.UsageReport{}, missing
			}
			return rep, nil
		}
		q.Cursor = page.Next
	}
}
