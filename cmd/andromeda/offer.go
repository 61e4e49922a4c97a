package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

func (env *cli) offerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "offer",
		Short: "Show what the node offers: drivers, languages, isolation, limits, prices",
		Long: `Offer shows the node's offer, in the shape of a Golem provider's offer:
flat, dotted properties a requestor can match on (the drivers and their
languages and versions, the isolation layers that hold, the limits, the
operator's offer.properties and what each registered runtime injects), the
constraints the node's policy puts on a service, and the operator's prices.
Disabled drivers and runtimes are listed with the reason.`,
		Example: `  andromeda offer
  andromeda offer --json | jq .properties`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, cf, func(c *api.Client) (api.Offer, error) { return c.Offer(cmd.Context()) }, printOffer)
	}
	return cmd
}

func printOffer(w io.Writer, o api.Offer) {
	fmt.Fprintf(w, "node %s\n\nDRIVERS\n", o.Node)
	tw := table(w)
	fmt.Fprintln(tw, "NAME\tSTATE\tLANGUAGES\tISOLATION")
	for _, d := range o.Drivers {
		state := "enabled"
		if !d.Enabled {
			state = "disabled: " + oneLine(d.Reason, 80)
		}
		var langs []string
		for _, l := range slices.Sorted(maps.Keys(d.Languages)) {
			langs = append(langs, l+" ("+d.Languages[l]+")")
		}
		iso := fmt.Sprintf("%d layers", len(d.Isolation))
		if len(d.Missing) > 0 {
			iso += ", missing " + strings.Join(d.Missing, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Name, state, orDash(strings.Join(langs, ", ")), iso)
	}
	tw.Flush()
	if len(o.Runtimes) > 0 {
		fmt.Fprintln(w, "\nRUNTIMES")
		tw := table(w)
		fmt.Fprintln(tw, "NAME\tVERSION\tSTATE\tLANGUAGES")
		for _, r := range o.Runtimes {
			state := r.Status
			if r.Reason != "" {
				state += ": " + oneLine(r.Reason, 100)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, orDash(r.Version), state, orDash(strings.Join(r.Languages, ", ")))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nPROPERTIES")
	tw = table(w)
	for _, k := range slices.Sorted(maps.Keys(o.Properties)) {
		v, _ := json.Marshal(o.Properties[k])
		fmt.Fprintf(tw, "%s\t%s\n", k, oneLine(string(v), 120))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nCONSTRAINTS %s\n", orDash(o.Constraints))
	if len(o.Prices) > 0 {
		fmt.Fprintf(w, "\nPRICES (%s per unit)\n", o.Currency)
		tw := table(w)
		for _, k := range slices.Sorted(maps.Keys(o.Prices)) {
			fmt.Fprintf(tw, "%s\t%g\n", k, o.Prices[k])
		}
		tw.Flush()
	}
	for _, n := range o.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
}

func (env *cli) runtimesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runtimes",
		Short: "List where services and flow modules can run: each driver's languages and the registered runtimes",
		Long: `Runtimes lists every place a service or a flow's module can run on the node:
each language a driver runs (driver/language, "wasm" for the wasm driver),
with its toolchain's version, and each runtime registered from runtimes.d.
Disabled ones are listed with the reason. A flow module's runtime field
names a runtime by its ID.`,
		Example: `  andromeda runtimes
  andromeda runtimes --json | jq -r '.[] | select(.enabled) | .id'`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, cf, func(c *api.Client) ([]api.Runtime, error) { return c.Runtimes(cmd.Context()) }, printRuntimes)
	}
	return cmd
}

func printRuntimes(w io.Writer, rs []api.Runtime) {
	tw := table(w)
	fmt.Fprintln(tw, "ID\tNAME\tVERSION\tKIND\tSTATE")
	for _, r := range rs {
		state := "enabled"
		if !r.Enabled {
			state = "disabled: " + oneLine(r.Reason, 80)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, orDash(oneLine(r.Version, 60)), r.Kind, state)
	}
	tw.Flush()
}

func (env *cli) selftestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "selftest [NAME]...",
		Short: "Run every driver's self-test and certify every runtime again, now",
		Long: `Selftest runs every driver's self-test and the conformance kit against
every runtime registered in runtimes.d, now, as the node does at start (the
operator's). A driver or runtime that fails is disabled with the reason;
one that passes again is enabled. Services already deployed keep running
either way. NAMEs, when given, are the only drivers and runtimes tested.
It exits 1 when any failed.`,
		Example: `  andromeda selftest
  andromeda selftest lua
  andromeda selftest --json`,
		Args:              wantArgs(0, 64),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var failed []string
		err := ask(env, cf, func(c *api.Client) (api.SelfTest, error) {
			st, err := c.SelfTest(cmd.Context(), args...)
			for _, r := range slices.Concat(st.Drivers, st.Runtimes) {
				if !r.OK {
					failed = append(failed, r.Name)
				}
			}
			return st, err
		}, printSelfTest)
		if err == nil && len(failed) > 0 {
			err = fmt.Errorf("selftest: %s failed (disabled)", strings.Join(failed, ", "))
		}
		return err
	}
	return cmd
}

func printSelfTest(w io.Writer, st api.SelfTest) {
	tw := table(w)
	fmt.Fprintln(tw, "KIND\tNAME\tRESULT\tTOOK")
	line := func(kind string, r api.SelfTestResult) {
		res := "ok"
		if !r.OK {
			res = "FAIL: " + oneLine(r.Reason, 120)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0fms\n", kind, r.Name, res, r.TookMS)
	}
	for _, r := range st.Drivers {
		line("driver", r)
	}
	for _, r := range st.Runtimes {
		line("runtime", r)
	}
	tw.Flush()
}

func (env *cli) testCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "test NAME",
		Short: "Run a service's own self-test now",
		Long: `Test runs a deployed service's self-test now, as its deploy did: a wasm
reactor's andromeda_test export, or the test function of a Node.js,
Python or Go service (see docs/runtime-protocol.md). It prints "passed",
"no self-test" or the failure, and exits 1 when the test failed
(operator).`,
		Example: `  andromeda test greeter
  andromeda test greeter --json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var res api.ServiceTest
		err := ask(env, cf, func(c *api.Client) (api.ServiceTest, error) {
			var err error
			res, err = c.TestService(cmd.Context(), args[0])
			return res, err
		}, printServiceTest)
		if err == nil && !res.OK {
			err = errors.New("test " + res.Service + ": failed")
		}
		return err
	}
	return cmd
}

func printServiceTest(w io.Writer, t api.ServiceTest) {
	switch {
	case !t.Ran && t.OK:
		fmt.Fprintf(w, "%s: no self-test\n", t.Service)
	case t.OK:
		fmt.Fprintf(w, "%s: self-test passed (%.0fms)\n", t.Service, t.TookMS)
	default:
		fmt.Fprintf(w, "%s: self-test FAILED (%.0fms)\n%s\n", t.Service, t.TookMS, t.Error)
	}
}
