package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/usage"
)

func (env *cli) usageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usage NAME",
		Short: "Show what a service's runs consumed, from their signed usage records",
		Long: `Usage shows a service's usage in a period: the totals (runs, wall and
CPU time, the sums of the custom counters the service reported) and one
line per run, newest first, from each run's usage record. Every run that
reached a driver has a usage record signed with the node key; --json gives
them as they are signed, for a requestor or a billing system to keep and
check with "andromeda usage verify".

Peak memory is a high-water mark: "run" when the instance or worker served
that run alone, "worker" when a warm worker or instance shared with other
runs was measured (its peak since it started). Dropped counts the counter
reports the node refused (a bad name or value, more than 32 names).

T in --since is a duration before now (30m, 24h, 7d) or an RFC 3339 time.`,
		Example: `  andromeda usage price-watch
  andromeda usage price-watch --since 7d --json > usage.json
  andromeda usage verify usage.json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	since := cmd.Flags().String("since", "24h", "look back to `T`: a duration before now (30m, 24h, 7d) or an RFC 3339 time")
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		t, err := parseWhen("since", *since, time.Now())
		if err != nil {
			return err
		}
		return ask(env, cf, func(c *api.Client) (api.UsageReport, error) { return c.Usage(cmd.Context(), args[0], t) }, printUsage)
	}
	cmd.AddCommand(env.usageVerifyCmd())
	return cmd
}

func printUsage(w io.Writer, u api.UsageReport) {
	fmt.Fprintf(w, "%s: usage from %s to %s UTC, signed by node %s\n\n", u.Service, whyTime(u.Since), whyTime(u.Until), u.NodeKey)
	t := u.Totals
	fmt.Fprintf(w, "Runs:\t%d\nWall:\t%s\nCPU:\t%s\n", t.Runs, time.Duration(t.WallNS), time.Duration(t.CPUNS))
	if len(t.Counters) > 0 {
		fmt.Fprintf(w, "Counters:\t%s\n", counters(t.Counters))
	}
	if t.CountersDropped > 0 {
		fmt.Fprintf(w, "Dropped:\t%d counter reports\n", t.CountersDropped)
	}
	fmt.Fprintln(w)
	if len(u.Records) == 0 {
		fmt.Fprintln(w, "no signed usage records in the period")
	} else {
		tw := table(w)
		fmt.Fprintln(tw, "START\tRUN\tTRIGGER\tOUTCOME\tDRIVER\tWALL\tCPU\tPEAK MEMORY\tCOUNTERS")
		for _, raw := range u.Records {
			var b struct{ Record usage.Record }
			if json.Unmarshal(raw, &b) != nil {
				fmt.Fprintln(tw, "?\tunreadable record")
				continue
			}
			r := b.Record
			mem := "-"
			if r.PeakMemory > 0 {
				mem = size(r.PeakMemory) + " (" + r.MemoryScope + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", whyTime(r.Start), r.RunID, r.Trigger, r.Outcome, r.Driver,
				time.Duration(r.WallNS), time.Duration(r.CPUNS), mem, counters(r.Counters))
		}
		tw.Flush()
	}
	if u.Unsigned > 0 {
		fmt.Fprintf(w, "\nnote: %d runs in the period have no usage record (they never reached a driver)\n", u.Unsigned)
	}
	if u.Truncated {
		fmt.Fprintf(w, "\nnote: more than %d signed runs in the period; the oldest are left out (narrow --since)\n", api.MaxUsageRecords)
	}
}

// counters writes counters as name=value, sorted by name.
func counters(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+strconv.FormatFloat(m[k], 'g', -1, 64))
	}
	return strings.Join(parts, " ")
}

func (env *cli) usageVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify FILE|-",
		Short: "Check signed usage records against the node's key",
		Long: `Verify checks usage records: each must be signed by the node key (the
signature verifies over the record's canonical JSON, its digest matches,
and the record names that key as its node). FILE (or - for standard
input) holds one sealed record, a run (andromeda runs show --json), or
the answer of "andromeda usage NAME --json", whose totals must then also
be the sums of its records.

The key is --key, the node's key as GET /v1/node shows it (node_key,
"ed25519:<base64>"); without --key it is asked of the node. A requestor
that does not trust the node's answer passes the key it got another way.
The exit status is non-zero if any record fails.`,
		Example: `  andromeda usage price-watch --json | andromeda usage verify -
  andromeda usage verify usage.json --key ed25519:3q2+7w...`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	keyFlag := cmd.Flags().String("key", "", "the node's public `KEY`, ed25519:<base64> (default: ask the node)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var data []byte
		var err error
		if args[0] == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(args[0])
		}
		if err != nil {
			return fmt.Errorf("usage verify: %w", err)
		}
		return env.verifyUsageAndSay(cmd, cf, *keyFlag, data)
	}
	return cmd
}

// trustedKey is key, or, when empty, the node's key as it says it; what
// names the command in errors.
func (env *cli) trustedKey(cmd *cobra.Command, cf *clientFlags, key, what string) (ed25519.PublicKey, string, error) {
	if key == "" {
		c, err := env.client(cf)
		if err != nil {
			return nil, "", err
		}
		info, err := c.Node(cmd.Context())
		if err != nil {
			return nil, "", fmt.Errorf("%s: ask the node for its key (or pass --key): %w", what, err)
		}
		if key = info.NodeKey; key == "" {
			return nil, "", fmt.Errorf("%s: the node does not say its key; pass --key", what)
		}
	}
	pub, err := attest.ParsePublicKey(key)
	if err != nil {
		return nil, "", fmt.Errorf("%s: --key: %w", what, err)
	}
	return ed25519.PublicKey(pub), key, nil
}

// verifyUsageAndSay verifies the usage records in data with key (the
// node's when empty) and prints what it found.
func (env *cli) verifyUsageAndSay(cmd *cobra.Command, cf *clientFlags, key string, data []byte) error {
	pub, k, err := env.trustedKey(cmd, cf, key, "usage verify")
	if err != nil {
		return err
	}
	res, err := verifyUsage(data, pub)
	if cf.json {
		if perr := printJSON(env.stdout, res); perr != nil {
			return perr
		}
	} else {
		for _, r := range res.Records {
			if r.Error != "" {
				fmt.Fprintf(env.stdout, "FAILED\t%s\t%s\n", r.RunID, r.Error)
			} else {
				fmt.Fprintf(env.stdout, "ok\t%s\t%s %s\n", r.RunID, r.Service, counters(r.Counters))
			}
		}
	}
	if err != nil {
		return err
	}
	if !cf.json {
		fmt.Fprintf(env.stdout, "verified %d usage records signed by %s\n", len(res.Records), k)
	}
	return nil
}

// verified is verify's answer for one record, and for all.
type verified struct {
	RunID    string             `json:"run_id,omitempty"`
	Service  string             `json:"service,omitempty"`
	Counters map[string]float64 `json:"counters,omitempty"`
	Error    string             `json:"error,omitempty"`
}

type verifyResult struct {
	Records []verified `json:"records"`
	Totals  string     `json:"totals,omitempty"` // "ok" or why not, for a usage report
}

// verifyUsage checks every usage record in data (a sealed record, a run,
// or a usage report) with pub. The error says how many failed.
func verifyUsage(data []byte, pub ed25519.PublicKey) (verifyResult, error) {
	var doc struct {
		Signature   json.RawMessage   `json:"signature"`
		UsageRecord json.RawMessage   `json:"usage_record"`
		Records     []json.RawMessage `json:"records"`
		Totals      *api.UsageTotals  `json:"totals"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return verifyResult{}, fmt.Errorf("usage verify: not JSON: %w", err)
	}
	var bodies []json.RawMessage
	switch {
	case doc.Signature != nil:
		bodies = []json.RawMessage{bytes.TrimSpace(data)}
	case doc.UsageRecord != nil:
		bodies = []json.RawMessage{doc.UsageRecord}
	case doc.Records != nil:
		bodies = doc.Records
	default:
		return verifyResult{}, errors.New("usage verify: no usage record: want a sealed record, a run with usage_record, or a usage report with records")
	}
	res := verifyResult{Records: []verified{}}
	var sum usage.Totals
	failed := 0
	for i, b := range bodies {
		r, err := usage.Verify(b, pub)
		if err != nil {
			failed++
			res.Records = append(res.Records, verified{RunID: fmt.Sprintf("records[%d]", i), Error: err.Error()})
			continue
		}
		sum.Add(r)
		res.Records = append(res.Records, verified{RunID: r.RunID, Service: r.Service, Counters: r.Counters})
	}
	if doc.Totals != nil && failed == 0 {
		t := doc.Totals
		res.Totals = "ok"
		if t.Runs != sum.Runs || t.WallNS != sum.WallNS || t.CPUNS != sum.CPUNS || t.CountersDropped != sum.CountersDropped || !maps.Equal(nonNil(t.Counters), nonNil(sum.Counters)) {
			res.Totals = fmt.Sprintf("totals are not the sums of the records: runs %d, wall %d ns, cpu %d ns, counters %s; the records sum to runs %d, wall %d ns, cpu %d ns, counters %s",
				t.Runs, t.WallNS, t.CPUNS, counters(t.Counters), sum.Runs, sum.WallNS, sum.CPUNS, counters(sum.Counters))
			return res, errors.New("usage verify: " + res.Totals)
		}
	}
	if failed > 0 {
		return res, fmt.Errorf("usage verify: %d of %d usage records failed", failed, len(bodies))
	}
	return res, nil
}

func nonNil(m map[string]float64) map[string]float64 {
	if m == nil {
		return map[string]float64{}
	}
	return m
}
