package api

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// UsageReport answers GET /v1/usage: one service's usage in a period, as
// totals and as the signed usage record of each run.
type UsageReport struct {
	Service string    `json:"service"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	// NodeKey is the key the records are signed with, "ed25519:<base64>"
	// (also GET /v1/node's node_key). A requestor checks records against
	// a node key it trusts, not against this field alone.
	NodeKey string      `json:"node_key"`
	Totals  UsageTotals `json:"totals"`
	// Records are the runs' sealed usage records, newest first (package
	// usage; `andromeda usage verify` checks them).
	Records []json.RawMessage `json:"records"`
	// Unsigned counts the runs in the period without a usage record: they
	// never reached a driver (skipped, rejected before running), or were
	// recorded before the node signed usage.
	Unsigned int `json:"unsigned,omitempty"`
	// Truncated says the period holds more than MaxUsageRecords signed
	// runs: the oldest are left out, of the records and of the totals.
	Truncated bool `json:"truncated,omitempty"`
}

// UsageTotals sums the usage of the records of a UsageReport.
type UsageTotals struct {
	Runs            int                `json:"runs"`
	WallNS          int64              `json:"wall_ns"`
	CPUNS           int64              `json:"cpu_ns"`
	Counters        map[string]float64 `json:"counters"`
	CountersDropped int                `json:"counters_dropped,omitempty"`
	// NetworkRx and NetworkTx sum the network bytes of the runs that
	// measured them.
	NetworkRx int64 `json:"network_rx_bytes,omitempty"`
	NetworkTx int64 `json:"network_tx_bytes,omitempty"`
}

// MaxUsageRecords bounds the records one UsageReport holds.
const MaxUsageRecords = 10_000

// Usage asks the node for service's usage since the given time (zero: the
// node's default, the last 24 hours).
func (c *Client) Usage(ctx context.Context, service string, since time.Time) (UsageReport, error) {
	v := url.Values{"service": {service}}
	if !since.IsZero() {
		v.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	var u UsageReport
	return u, c.getJSON(ctx, "/v1/usage?"+v.Encode(), &u)
}
