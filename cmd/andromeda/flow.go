package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/flow"
)

// flowCmd is the runner API's flows: apply (addOrUpdateFlow), ls
// (listFlowsForRuntime), inspect and rm (removeFlow).
func (env *cli) flowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flow",
		Short: "Apply, list, inspect and remove flows: services wired into graphs",
		Long: `A flow wires services (or inline code) into a graph: modules joined by
wires from an output port to an input port. The node checks a flow against
the services you may use and the runtimes it has (andromeda runtimes), and
keeps it; it does not run flows yet.`,
		Example: `  andromeda flow apply orders.yaml
  andromeda flow apply orders.yaml --dry-run
  andromeda flow ls --runtime process/python
  andromeda flow inspect orders
  andromeda flow rm orders`,
	}
	cmd.AddCommand(env.flowApplyCmd(), env.flowLsCmd(), env.flowInspectCmd(), env.flowRmCmd())
	return cmd
}

func (env *cli) flowApplyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "Add a flow, or update it to the version in FILE (.yaml, .yml, .json or .toml)",
		Long: `Apply sends the flow in FILE to the node, which checks it and keeps it:
every problem is reported at once, each with its path, and nothing is
written then. Applying the same document again changes nothing; another
version says what changed (modules added, removed and changed, wires
rewired). --dry-run checks and says what would change, writing nothing.`,
		Example: `  andromeda flow apply orders.yaml
  andromeda flow apply orders.toml --dry-run --json`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: fileArgs(1),
	}
	var dry bool
	cmd.Flags().BoolVar(&dry, "dry-run", false, "check the flow and say what would change; write nothing")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ct := api.FlowMediaType(args[0])
		if ct == "" {
			return usagef("%s: a flow file ends in .yaml, .yml, .json or .toml", args[0])
		}
		data, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		if len(data) > flow.MaxSize {
			return fmt.Errorf("%s: %d bytes, more than a flow's %d", args[0], len(data), flow.MaxSize)
		}
		return ask(env, cf, func(c *api.Client) (api.FlowApplied, error) { return c.ApplyFlow(cmd.Context(), ct, data, dry) }, printFlowApplied)
	}
	return cmd
}

func printFlowApplied(w io.Writer, a api.FlowApplied) {
	what := "updated"
	switch {
	case a.Unchanged:
		what = "unchanged"
	case a.Created:
		what = "created"
	}
	if a.DryRun && !a.Unchanged {
		what = "would be " + what + " (dry run: nothing written)"
	}
	fmt.Fprintf(w, "flow %s %s %s: %d modules, %d wires\n", a.Flow.ID, a.Flow.Version, what, len(a.Flow.Modules), len(a.Flow.Wires))
	for _, c := range a.Changes {
		fmt.Fprintln(w, "  "+c)
	}
	fmt.Fprintln(w, "note: the node keeps flows and checks them; it does not run them yet")
}

func (env *cli) flowLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the flows, or those with a module on one runtime",
		Example: `  andromeda flow ls
  andromeda flow ls --runtime process/python`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	var runtime string
	cmd.Flags().StringVar(&runtime, "runtime", "", "only flows with a module on runtime `ID` (andromeda runtimes)")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, cf, func(c *api.Client) ([]api.Flow, error) { return c.Flows(cmd.Context(), runtime) }, printFlows)
	}
	return cmd
}

func printFlows(w io.Writer, fs []api.Flow) {
	if len(fs) == 0 {
		fmt.Fprintln(w, "no flows")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "ID\tVERSION\tOWNER\tMODULES\tWIRES\tRUNTIMES\tAPPLIED")
	for _, f := range fs {
		var rts []string
		for _, m := range f.Modules {
			if !slices.Contains(rts, m.Runtime) {
				rts = append(rts, m.Runtime)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", f.ID, f.Version, f.Owner, len(f.Modules), len(f.Wires), strings.Join(rts, ", "), f.Applied.Format("2006-01-02 15:04:05Z07:00"))
	}
	tw.Flush()
}

func (env *cli) flowInspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "inspect ID",
		Short:             "Show a flow's modules, where each runs, and its wires",
		Example:           `  andromeda flow inspect orders`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.Flow, error) { return c.Flow(cmd.Context(), args[0]) }, printFlow)
	}
	return cmd
}

func printFlow(w io.Writer, f api.Flow) {
	fmt.Fprintf(w, "flow %s %s, owner %s, applied %s\n%s\n\nMODULES\n", f.ID, f.Version, f.Owner, f.Applied.Format("2006-01-02 15:04:05Z07:00"), f.Digest)
	tw := table(w)
	fmt.Fprintln(tw, "ID\tRUNS\tRUNTIME")
	for _, m := range f.Modules {
		runs := "service " + m.Service
		if m.Service == "" {
			runs = "inline " + m.Language
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.ID, runs, m.Runtime)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nWIRES")
	if len(f.Wires) == 0 {
		fmt.Fprintln(w, "none")
	}
	for _, wr := range f.Wires {
		loop := ""
		if wr.Loop > 0 {
			loop = fmt.Sprintf("  (loop, at most %d rounds)", wr.Loop)
		}
		fmt.Fprintf(w, "%s → %s%s\n", wr.From, wr.To, loop)
	}
}

func (env *cli) flowRmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "rm ID",
		Short:             "Remove a flow",
		Example:           `  andromeda flow rm orders`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := env.client(cf)
		if err != nil {
			return err
		}
		if err := c.RemoveFlow(cmd.Context(), args[0]); err != nil {
			return err
		}
		if cf.json {
			return printJSON(env.stdout, map[string]string{"removed": args[0]})
		}
		fmt.Fprintf(env.stdout, "flow %s removed\n", args[0])
		return nil
	}
	return cmd
}
