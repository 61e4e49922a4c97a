package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/flow"
)

// flowCmd is the runner API's flows: apply (addOrUpdateFlow), ls
// (listFlowsForRuntime), inspect and rm (removeFlow).
func (env *cli) flowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flow",
		Short: "Apply, run, fire, list, inspect and remove flows: services wired into graphs",
		Long: `A flow wires services (or inline code) into a graph: modules joined by
wires from an output port to an input port. The node checks a flow against
the services you may use and the runtimes it has (andromeda runtimes), and
keeps it. A started flow runs the messages fired at it: each module's run is
a run of its service (andromeda runs), and each message's way through the
flow is a flow run (andromeda flow runs). Inline modules do not run yet.`,
		Example: `  andromeda flow apply orders.yaml
  andromeda flow apply orders.yaml --dry-run
  andromeda flow start orders
  andromeda flow fire orders --input '{"id": 7}'
  andromeda flow runs orders
  andromeda flow rerun orders/06h3wefs2gb8y55q03hg --from score
  andromeda flow ls --runtime process/python
  andromeda flow inspect orders
  andromeda flow break orders/score
  andromeda flow step orders
  andromeda flow unbreak orders/score
  andromeda flow stop orders
  andromeda flow rm orders`,
	}
	cmd.AddCommand(env.flowApplyCmd(), env.flowLsCmd(), env.flowInspectCmd(), env.flowRmCmd(),
		env.flowStartCmd(), env.flowStopCmd(), env.flowFireCmd(), env.flowRunsCmd(),
		env.flowBreakCmd(true), env.flowBreakCmd(false), env.flowStepCmd(), env.flowRerunCmd())
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
	if a.Flow.Running && !a.DryRun && !a.Unchanged && !a.Created {
		fmt.Fprintln(w, "the flow runs this version now: runs in flight ended in the old one, queued messages run in this one")
	}
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
	fmt.Fprintln(tw, "ID\tVERSION\tSTATE\tQUEUED\tOWNER\tMODULES\tWIRES\tRUNTIMES\tAPPLIED")
	for _, f := range fs {
		var rts []string
		for _, m := range f.Modules {
			if !slices.Contains(rts, m.Runtime) {
				rts = append(rts, m.Runtime)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", f.ID, f.Version, flowState(f), f.Queued, f.Owner, len(f.Modules), len(f.Wires), strings.Join(rts, ", "), f.Applied.Format("2006-01-02 15:04:05Z07:00"))
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

// flowState is "running" (in a cluster, "running on NODE") or
// "stopped".
func flowState(f api.Flow) string {
	if f.Running && f.Node != "" {
		return "running on " + f.Node
	}
	if f.Running {
		return "running"
	}
	return "stopped"
}

func printFlow(w io.Writer, f api.Flow) {
	fmt.Fprintf(w, "flow %s %s, owner %s, applied %s\n%s\n%s: %d queued, %d flow runs in flight\n\nMODULES\n", f.ID, f.Version, f.Owner,
		f.Applied.Format("2006-01-02 15:04:05Z07:00"), f.Digest, flowState(f), f.Queued, f.InFlight)
	if len(f.Context) > 0 {
		b, _ := json.Marshal(f.Context)
		fmt.Fprintf(w, "context: %s\n", oneLine(string(b), 300))
	}
	tw := table(w)
	fmt.Fprintln(tw, "ID\tRUNS\tRUNTIME\tWAITING\tRAN\tFAILED\tLAST MINUTE\tBREAKPOINT")
	for _, m := range f.Modules {
		runs := "service " + m.Service
		if m.Language != "" {
			runs = "inline " + m.Language + " (service " + m.Service + ")"
		}
		bp := ""
		if m.Breakpoint {
			bp = "held"
		}
		where := m.Runtime
		switch {
		case m.WhenGone != "" && m.Away:
			where += " (away: " + m.WhenGone + ")"
		case m.WhenGone != "":
			where += " (when gone: " + m.WhenGone + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", m.ID, runs, where, m.Waiting, m.Ran, m.Failed, m.LastMinute, bp)
	}
	tw.Flush()
	for _, m := range f.Modules {
		if len(m.Held) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nHELD AT %s (andromeda flow step %s)\n", m.ID, f.ID)
		tw := table(w)
		fmt.Fprintln(tw, "FLOW RUN\tMESSAGE\tINPUT")
		for _, h := range m.Held {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", h.FlowRun, h.Message, oneLine(compactJSON(h.Input), 100))
		}
		tw.Flush()
	}
	if len(f.Triggers) > 0 {
		fmt.Fprintln(w, "\nTRIGGERS")
		tw := table(w)
		fmt.Fprintln(tw, "NAME\tKIND\tON\tTO\tNEXT")
		for _, t := range f.Triggers {
			to, next := cmp.Or(t.Module, "entries"), ""
			if t.Next != nil {
				next = t.Next.Format("2006-01-02 15:04:05Z07:00")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Kind, t.On, to, next)
		}
		tw.Flush()
	}
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

func (env *cli) flowStartCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start ID",
		Short: "Start a flow: messages fired at it run, again after the node restarts",
		Long: `Start checks the flow against the services and runtimes there are now
and runs it: the messages waiting in its queue first, in order, then each
one fired. Starting a running flow changes nothing.`,
		Example:           `  andromeda flow start orders`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.Flow, error) { return c.StartFlow(cmd.Context(), args[0]) }, printFlowState)
	}
	return cmd
}

func (env *cli) flowStopCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a flow: its runs in flight end, nothing more is taken",
		Long: `Stop lets the flow runs in flight end (up to 30 s; those that do not run
again, their module runs reused, at the next start) and takes no more
messages: those queued wait for the next start, and new ones are refused.`,
		Example:           `  andromeda flow stop orders`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.Flow, error) { return c.StopFlow(cmd.Context(), args[0]) }, printFlowState)
	}
	return cmd
}

func printFlowState(w io.Writer, f api.Flow) {
	fmt.Fprintf(w, "flow %s %s %s: %d queued, %d flow runs in flight\n", f.ID, f.Version, flowState(f), f.Queued, f.InFlight)
}

func (env *cli) flowFireCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fire ID",
		Short: "Send a message into a running flow and wait for its flow run",
		Long: `Fire stores the message in the flow's queue (from then on it is not lost)
and waits for its flow run to end, showing each module run. --no-wait
answers with the flow run's id as soon as the message is stored.`,
		Example: `  andromeda flow fire orders --input '{"id": 7}'
  andromeda flow fire orders --module score --input '{"id": 7}' --no-wait`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	input := cmd.Flags().String("input", "", "`JSON` message to send")
	module := cmd.Flags().String("module", "", "send it to module `ID` instead of the flow's entry modules")
	wait := cmd.Flags().Duration("wait", time.Minute, "how long to wait for the flow run (at most 5m)")
	noWait := cmd.Flags().Bool("no-wait", false, "answer as soon as the message is stored")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req := api.FlowFireRequest{Module: *module}
		if *input != "" {
			if !json.Valid([]byte(*input)) {
				return usagef("--input: must be valid JSON")
			}
			req.Message = json.RawMessage(*input)
		}
		if !*noWait {
			req.Wait = wait.String()
		}
		return ask(env, cf, func(c *api.Client) (api.FlowRun, error) { return c.FireFlow(cmd.Context(), args[0], req) }, printFlowRun)
	}
	return cmd
}

func printFlowRun(w io.Writer, r api.FlowRun) {
	if r.Outcome == "queued" {
		fmt.Fprintf(w, "flow run %s of %s queued (andromeda flow runs %s)\n", r.ID, r.Flow, r.Flow)
		return
	}
	replayed := ""
	if r.Replayed {
		replayed = ", replayed"
	}
	if r.RerunOf != "" {
		replayed += ", a re-run of " + r.RerunOf
	}
	fmt.Fprintf(w, "flow run %s of %s %s: %s in %v%s\n", r.ID, r.Flow, r.Version, r.Outcome, r.Duration.Round(time.Microsecond), replayed)
	if r.Error != "" {
		fmt.Fprintf(w, "  failed at %s: %s\n", r.Module, r.Error)
	}
	tw := table(w)
	fmt.Fprintln(tw, "  MODULE\tSERVICE\tRUN\tOUTCOME\tWAITED\tFROM")
	for _, s := range r.Steps {
		run := s.Run
		if s.Reused {
			run += " (reused)"
		}
		if s.Runtime != "" {
			run += " on " + s.Runtime
		}
		if s.Note != "" {
			run += " (" + s.Note + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%v\t%s\n", s.Module, s.Service, run, s.Outcome, s.Queued.Round(time.Microsecond), cmp.Or(s.From, "input"))
	}
	tw.Flush()
	if r.StepsCut > 0 {
		fmt.Fprintf(w, "  … %d more steps not kept (the record keeps the first %d)\n", r.StepsCut, len(r.Steps))
	}
	for _, d := range r.Dropped {
		fmt.Fprintf(w, "  dropped: %s\n", d)
	}
}

func (env *cli) flowRunsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runs ID",
		Short: "List a flow's last runs, newest first",
		Long: `Runs lists a flow's last runs, newest first. With --dead-letters it lists
its dead letters instead: messages aimed at a module the flow's version
running them did not have (a hot update removed it), which failed without
running; they are looked for among the flow's last 1,000 runs, and
andromeda flow rerun FLOW/RUN --from MODULE sends one to a module that is there.`,
		Example: `  andromeda flow runs orders --limit 5
  andromeda flow runs orders --dead-letters`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	limit := cmd.Flags().Int("limit", 20, "how many runs (1 to 1000)")
	dead := cmd.Flags().Bool("dead-letters", false, "list the dead letters among the last 1,000 runs")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *limit < 1 || *limit > 1000 {
			return usagef("--limit: must be from 1 to 1000, got %d", *limit)
		}
		list := (*api.Client).FlowRuns
		if *dead {
			list = (*api.Client).FlowDeadLetters
		}
		return ask(env, cf, func(c *api.Client) ([]api.FlowRun, error) { return list(c, cmd.Context(), args[0], *limit) }, printFlowRuns)
	}
	return cmd
}

func printFlowRuns(w io.Writer, rs []api.FlowRun) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "no flow runs")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "RUN\tVERSION\tOUTCOME\tSTEPS\tDURATION\tSTART\tFAILED AT")
	for _, r := range rs {
		at := ""
		if r.Outcome == "failed" {
			at = r.Module + ": " + oneLine(r.Error, 80)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%s\t%s\n", r.ID, r.Version, r.Outcome, len(r.Steps), r.Duration.Round(time.Microsecond), r.Start.Format("2006-01-02 15:04:05Z07:00"), at)
	}
	tw.Flush()
}

// flowModuleArg splits FLOW/MODULE.
func flowModuleArg(arg string) (id, module string, err error) {
	id, module, ok := strings.Cut(arg, "/")
	if !ok || id == "" || module == "" {
		return "", "", usagef("%q: want FLOW/MODULE, e.g. orders/score", arg)
	}
	return id, module, nil
}

func (env *cli) flowBreakCmd(on bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "break FLOW/MODULE",
		Short: "Set a breakpoint: the module holds the messages that reach it (the operator)",
		Long: `Break holds the messages that reach MODULE of FLOW: they wait there, shown
by andromeda flow inspect, until andromeda flow step moves them one module
on or andromeda flow unbreak lets them go. Other modules and other flows
keep running. The breakpoint stays across restarts and new versions that
keep the module.`,
		Example:           `  andromeda flow break orders/score`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	if !on {
		cmd.Use = "unbreak FLOW/MODULE"
		cmd.Short = "Remove a breakpoint: the messages held there go on (the operator)"
		cmd.Long = ""
		cmd.Example = `  andromeda flow unbreak orders/score`
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, module, err := flowModuleArg(args[0])
		if err != nil {
			return err
		}
		return ask(env, cf, func(c *api.Client) (api.Flow, error) { return c.SetBreakpoint(cmd.Context(), id, module, on) }, func(w io.Writer, f api.Flow) {
			what := "set: messages are held at " + module
			if !on {
				what = "removed: " + module + " runs its messages"
			}
			held := 0
			for _, m := range f.Modules {
				if m.ID == module {
					held = m.Waiting
				}
			}
			fmt.Fprintf(w, "flow %s: breakpoint %s (%d waiting there)\n", f.ID, what, held)
		})
	}
	return cmd
}

func (env *cli) flowStepCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "step ID",
		Short: "Move each message held at a breakpoint one module on (the operator)",
		Long: `Step runs each module a breakpoint holds messages at, once for each
message it held, and shows what each run took, gave and where its outputs
went (where the next module has a breakpoint too, they are held there).`,
		Example:           `  andromeda flow step orders`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.FlowStepResult, error) { return c.StepFlow(cmd.Context(), args[0]) }, printFlowStep)
	}
	return cmd
}

func printFlowStep(w io.Writer, r api.FlowStepResult) {
	if len(r) == 0 {
		fmt.Fprintln(w, "nothing held: no message waits at a breakpoint")
		return
	}
	for _, module := range slices.Sorted(maps.Keys(r)) {
		ms := r[module]
		for i, in := range ms.InputStates {
			fmt.Fprintf(w, "%s: run %s\n  in:  %s\n", module, cmp.Or(ms.Runs[i], "(none recorded)"), oneLine(compactJSON(in), 200))
			for _, o := range ms.OutputStates[i] {
				to := "dropped (no wire)"
				if len(o.To) > 0 {
					to = "→ " + strings.Join(o.To, ", ")
				}
				fmt.Fprintf(w, "  out: %s %s %s\n", o.Port, oneLine(compactJSON(o.Message), 200), to)
			}
			if ms.Errors[i] != "" {
				fmt.Fprintf(w, "  error: %s\n", oneLine(ms.Errors[i], 300))
			}
		}
	}
}

// compactJSON is raw on one line, without the API's indentation.
func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func (env *cli) flowRerunCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rerun FLOW/RUN",
		Short: "Run a failed flow run again from a module (the operator)",
		Long: `Rerun starts a new flow run at MODULE (--from; by default the module the
flow run failed at) with the message that module got in the failed one:
what the module before it emitted, read from that run's record, or the
flow's input. The modules before it do not run again. The new flow run
says which one it re-runs (andromeda flow runs).`,
		Example:           `  andromeda flow rerun orders/06h3wefs2gb8y55q03hg --from score`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	from := cmd.Flags().String("from", "", "the `MODULE` to run again from (default: where it failed)")
	wait := cmd.Flags().Duration("wait", time.Minute, "how long to wait for the new flow run (at most 5m)")
	noWait := cmd.Flags().Bool("no-wait", false, "answer as soon as the message is stored")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, run, ok := strings.Cut(args[0], "/")
		if !ok || id == "" || run == "" {
			return usagef("%q: want FLOW/RUN, e.g. orders/06h3wefs2gb8y55q03hg", args[0])
		}
		req := api.FlowRerunRequest{From: *from}
		if !*noWait {
			req.Wait = wait.String()
		}
		return ask(env, cf, func(c *api.Client) (api.FlowRun, error) { return c.RerunFlow(cmd.Context(), id, run, req) }, printFlowRun)
	}
	return cmd
}
