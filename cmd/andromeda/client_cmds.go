package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

func (env *cli) lsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List services",
		Long: `Ls lists the node's services with their version, driver, status,
health, triggers, owner and digest.`,
		Example: `  andromeda ls
  andromeda ls -o wide
  andromeda ls --json | jq -r '.[].name'`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	addOutputFlag(cmd, cf)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		wide, err := cf.wide()
		if err != nil {
			return err
		}
		print := printServices
		if wide {
			print = printServicesWide
		}
		return ask(env, cf, func(c *api.Client) ([]api.Service, error) { return c.Services(cmd.Context()) }, print)
	}
	return cmd
}

func (env *cli) inspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a service: manifest, decision, health, triggers",
		Long: `Inspect shows one service: its version, digest, owner and status, the
admission decision with its limits and reasons, its health, and its
triggers with their next ticks.`,
		Example: `  andromeda inspect price-watch
  andromeda inspect price-watch --json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.Service, error) { return c.Service(cmd.Context(), args[0]) }, printService)
	}
	return cmd
}

func (env *cli) fireCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fire NAME",
		Short: "Run a service now and print the run",
		Long: `Fire runs a service at once, by hand, and prints the run it recorded:
outcome, duration, usage and output. --input is the message the service
gets, as JSON. With --detach it prints the run's id at once and the run
goes on. Interrupted (Ctrl-C) while it waits, fire asks whether to cancel
the run when standard input is a terminal, cancels it with
--cancel-on-interrupt, and otherwise leaves it running and says how to
kill it.`,
		Example: `  andromeda fire greeter
  andromeda fire greeter --input '{"name":"Ada"}'
  andromeda fire greeter --input '"text"' --json
  andromeda fire price-watch --input '{"price": 120}' --plan
  andromeda fire batch --detach`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	input := cmd.Flags().String("input", "", "`JSON` message to pass to the service")
	plan := cmd.Flags().Bool("plan", false, "run the service but execute nothing, write no state and record no run: print what would be executed (envelopes and digests included)")
	rf := addRunFlags(cmd)
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var msg json.RawMessage
		if *input != "" {
			if !json.Valid([]byte(*input)) {
				return usagef("--input: must be valid JSON (quote strings: --input '\"text\"')")
			}
			msg = json.RawMessage(*input)
		}
		if *plan {
			if rf.detach {
				return usagef("--plan and --detach: a plan records no run to detach from; give one of them")
			}
			return ask(env, cf, func(c *api.Client) (api.Run, error) { return c.Plan(cmd.Context(), args[0], msg) }, printRun)
		}
		return env.fireAndWait(cmd.Context(), cf, rf, args[0], api.FireRequest{Message: msg})
	}
	return cmd
}

func (env *cli) runsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runs [NAME]",
		Short: "List runs, newest first",
		Long: `Runs lists the runs of one service, or of all, newest first: trigger,
start, duration, outcome and what the run did or why it did nothing.

T in --since and --until is an RFC 3339 time (2026-01-02T15:04:05Z) or a
duration before now (30m, 1h, 7d). More than 1000 runs are read a page at a
time; when more runs match than --limit, standard error says so.`,
		Example: `  andromeda runs
  andromeda runs --limit 10
  andromeda runs -o wide
  andromeda runs greeter --since 1h --all
  andromeda runs greeter --since 2026-01-02T00:00:00Z --until 1d --json
  andromeda runs --running greeter`,
		Args: wantArgs(0, 1),
	}
	cf := addClientFlags(cmd)
	addOutputFlag(cmd, cf)
	var o runsOptions
	cmd.Flags().IntVar(&o.limit, "limit", 20, "list at most `N` runs, newest first (more than 1000 are read a page at a time)")
	cmd.Flags().BoolVar(&o.all, "all", false, "every run the node keeps, instead of --limit")
	cmd.Flags().StringVar(&o.since, "since", "", "only runs started at or after `T`: an RFC 3339 time, or a duration before now (30m, 1h, 7d)")
	cmd.Flags().StringVar(&o.until, "until", "", "only runs started before `T`: an RFC 3339 time, or a duration before now")
	running := cmd.Flags().Bool("running", false, "list the runs in flight instead, oldest first (kill one with andromeda kill)")
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *running {
			for _, f := range []string{"limit", "all", "since", "until"} {
				if cmd.Flags().Changed(f) {
					return usagef("--running and --%s: every run in flight is listed; give one of them", f)
				}
			}
			return env.runningRuns(cmd.Context(), cf, args)
		}
		o.limitSet = cmd.Flags().Changed("limit")
		return env.runs(cmd.Context(), cf, args, o)
	}
	cmd.AddCommand(env.runShowCmd())
	return cmd
}

func (env *cli) runShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one run and what became of its actions",
		Long: `Show prints one run: trigger, outcome, output, and each execution of
its actions (attempts, state, the endpoint's answer, the digest and the
idempotency key), with the signed envelope of its submits.`,
		Example: `  andromeda runs show 06h3a2nyj3pfa646574g
  andromeda runs show 06h3a2nyj3pfa646574g --json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.Run, error) { return c.RunByID(cmd.Context(), args[0]) }, printRun)
	}
	return cmd
}

// runsOptions are the flags of `runs`.
type runsOptions struct {
	limit        int
	limitSet     bool // --limit was given
	all          bool
	since, until string
}

func (env *cli) runs(ctx context.Context, cf *clientFlags, args []string, o runsOptions) error {
	limit, all := o.limit, o.all
	if all && o.limitSet {
		return usagef("--all and --limit: give one of them")
	}
	if limit < 1 {
		return usagef("--limit: must be 1 or more")
	}
	wide, err := cf.wide()
	if err != nil {
		return err
	}
	now := time.Now()
	var q api.RunQuery
	if q.Since, err = parseWhen("since", o.since, now); err != nil {
		return err
	}
	if q.Until, err = parseWhen("until", o.until, now); err != nil {
		return err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return usagef("--until: must be after --since")
	}
	c, err := env.client(cf)
	if err != nil {
		return err
	}
	name := ""
	if len(args) == 1 {
		name = args[0]
	}
	// Follow the pages' cursors until the runs asked for are in.
	const page = 1000
	var runs []api.Run
	more := false
	for {
		q.Limit = page
		if !all {
			q.Limit = min(page, limit-len(runs))
		}
		l, err := c.ListRuns(ctx, name, q)
		if err != nil {
			return err
		}
		runs = append(runs, l.Runs...)
		if l.Next == "" {
			break
		}
		if !all && len(runs) >= limit {
			more = true
			break
		}
		q.Cursor = l.Next
	}
	if cf.json {
		if runs == nil {
			runs = []api.Run{}
		}
		err = printJSON(env.stdout, runs)
	} else if wide {
		printRunsWide(env.stdout, runs)
	} else {
		printRuns(env.stdout, runs)
	}
	if more {
		fmt.Fprintf(env.stderr, "more runs than these %d: see them with --limit or --all\n", len(runs))
	}
	return err
}

// parseWhen reads a --since or --until value: an RFC 3339 time, or a
// duration (Go's form, or whole days: 7d) meaning that long before now.
func parseWhen(flagName, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok && err != nil {
		var n int
		if n, err = strconv.Atoi(days); err == nil {
			d = time.Duration(n) * 24 * time.Hour
		}
	}
	if err != nil || d < 0 {
		return time.Time{}, usagef("--%s: must be an RFC 3339 time (2026-01-02T15:04:05Z) or a duration before now (30m, 1h, 7d)", flagName)
	}
	return now.Add(-d), nil
}

func (env *cli) rmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Stop and remove a service with its state; its runs stay unless --purge",
		Long: `Rm stops a service (its runs in flight get the node's lifecycle.stop_grace,
then are killed) and deletes its record, state and files. Its run history
stays, listed by andromeda runs NAME, until the node's run retention drops
it; --purge deletes it too.`,
		Example: `  andromeda rm greeter
  andromeda rm greeter --purge --json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	purge := cmd.Flags().Bool("purge", false, "also delete the service's run history")
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		remove := func(c *api.Client) (map[string]any, error) {
			return map[string]any{"removed": args[0], "purged": *purge}, c.RemoveWith(cmd.Context(), args[0], *purge)
		}
		return ask(env, cf, remove, func(w io.Writer, _ map[string]any) { fmt.Fprintf(w, "removed %s\n", args[0]) })
	}
	return cmd
}

func (env *cli) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create API tokens",
		Example: `  andromeda token create --name alice
  andromeda token create --name ci --role operator --json`,
	}
	create := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create an API token",
		Long: `Create creates an API token and prints its secret, which is shown only
once. A submitter token submits services, lists them and reads its own
services and runs; an operator token does everything. The token's name
is the owner of what it submits; operator and anonymous are reserved.`,
		Example: `  andromeda token create --name alice
  ANDROMEDA_TOKEN=$(andromeda token create --name ci --json | jq -r .token) andromeda ls`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(create)
	name := create.Flags().String("name", "", "token `NAME` (the owner of what it submits)")
	role := create.Flags().String("role", api.RoleSubmitter, "`ROLE`: submitter, operator, or runtime (connects a browser runtime, nothing else)")
	create.RegisterFlagCompletionFunc("role", words(api.RoleSubmitter, api.RoleOperator, api.RoleRuntime))
	create.RunE = func(cmd *cobra.Command, _ []string) error {
		create := func(c *api.Client) (api.Token, error) { return c.CreateToken(cmd.Context(), *name, *role) }
		return ask(env, cf, create, func(w io.Writer, t api.Token) {
			fmt.Fprintf(w, "created %s token %q; it is shown only once:\n%s\n", t.Role, t.Name, t.Secret)
		})
	}
	cmd.AddCommand(create)
	return cmd
}
