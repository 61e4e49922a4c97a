package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

// runFlags are the flags fire and run share: how to wait for the run.
type runFlags struct {
	detach            bool
	cancelOnInterrupt bool
}

func addRunFlags(cmd *cobra.Command) *runFlags {
	rf := new(runFlags)
	cmd.Flags().BoolVar(&rf.detach, "detach", false, "answer at once with the run's id; the run goes on (see runs --running, runs show, kill)")
	cmd.Flags().BoolVar(&rf.cancelOnInterrupt, "cancel-on-interrupt", false, "on Ctrl-C, cancel the run without asking")
	return rf
}

func (env *cli) runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run NAME [--input JSON] [-- ARG...]",
		Short: "Run a service now with arguments and print the run",
		Long: `Run runs a service at once, by hand, with the arguments after -- as its
argument vector (input.args, a list of strings; a wasm command guest also
gets them as its argv after the program name), and prints the run it
recorded. It is fire with arguments: the service needs a manual trigger,
and --input is the message, as JSON.

Interrupted (Ctrl-C) while it waits, run asks whether to cancel the run
when standard input is a terminal, cancels it with --cancel-on-interrupt,
and otherwise leaves it running and says how to kill it.`,
		Example: `  andromeda run wc -- -l README.md
  andromeda run report --input '{"month":"2026-11"}' -- --format csv
  andromeda run batch --detach -- all`,
		Args: func(cmd *cobra.Command, args []string) error {
			if at := cmd.ArgsLenAtDash(); at > 1 || at < 0 && len(args) > 1 {
				return usagef("the service's arguments go after --: andromeda run NAME -- ARG...")
			}
			if len(args) == 0 || cmd.ArgsLenAtDash() == 0 {
				return usagef("run takes the service's NAME before --")
			}
			return nil
		},
	}
	cf := addClientFlags(cmd)
	input := cmd.Flags().String("input", "", "`JSON` message to pass to the service")
	rf := addRunFlags(cmd)
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		msg, err := inputMessage(*input)
		if err != nil {
			return err
		}
		runArgs := args[1:]
		if runArgs == nil {
			runArgs = []string{}
		}
		return env.fireAndWait(cmd.Context(), cf, rf, args[0], api.FireRequest{Message: msg, Args: runArgs})
	}
	return cmd
}

// inputMessage reads --input.
func inputMessage(input string) (json.RawMessage, error) {
	if input == "" {
		return nil, nil
	}
	if !json.Valid([]byte(input)) {
		return nil, usagef("--input: must be valid JSON (quote strings: --input '\"text\"')")
	}
	return json.RawMessage(input), nil
}

// errInterrupted ends a fire or run that Ctrl-C stopped waiting.
var errInterrupted = errors.New("interrupted")

// fireAndWait starts the run at once (so its id is known) and, unless
// detached, waits for its record; Ctrl-C while it waits offers to cancel
// the run (see interrupted).
func (env *cli) fireAndWait(ctx context.Context, cf *clientFlags, rf *runFlags, name string, req api.FireRequest) error {
	c, err := env.client(cf)
	if err != nil {
		return err
	}
	// Starting the run takes a moment; a Ctrl-C meanwhile must still
	// learn its id, to offer to cancel it.
	sctx, stop := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	started, finished, err := c.FireDetached(sctx, name, req)
	stop()
	if err != nil {
		return err
	}
	if finished != nil {
		return printOne(env, cf, *finished, printRun)
	}
	if rf.detach || ctx.Err() != nil {
		if !rf.detach {
			return env.interrupted(c, started, rf.cancelOnInterrupt)
		}
		return printOne(env, cf, started, func(w io.Writer, r api.RunInFlight) {
			fmt.Fprintf(w, "started run %s of %s\nwatch it with: andromeda runs show %s\nkill it with:  andromeda kill %s\n", r.ID, r.Service, r.ID, r.ID)
		})
	}
	spin := env.spinner(fmt.Sprintf("run %s of %s: running", started.ID, started.Service))
	defer spin()
	for {
		run, _, done, err := c.WaitRun(ctx, started.ID, 30*time.Second)
		if ctx.Err() != nil || err != nil || done {
			spin()
		}
		if ctx.Err() != nil {
			return env.interrupted(c, started, rf.cancelOnInterrupt)
		}
		if err != nil {
			return err
		}
		if done {
			return printOne(env, cf, run, printRun)
		}
	}
}

// printOne prints v as JSON with --json, else as text.
func printOne[T any](env *cli, cf *clientFlags, v T, text func(io.Writer, T)) error {
	if cf.json {
		return printJSON(env.stdout, v)
	}
	text(env.stdout, v)
	return nil
}

// interrupted is what a fire or run does when Ctrl-C stops its wait:
// cancel the run when told to (--cancel-on-interrupt) or when the user
// says so at the prompt (standard input a terminal); otherwise leave it
// running and say how to kill it.
func (env *cli) interrupted(c *api.Client, run api.RunInFlight, cancel bool) error {
	if !cancel && env.stdinTerminal() {
		cancel = env.confirm(fmt.Sprintf("cancel run %s? [y/N] ", run.ID))
	}
	if !cancel {
		fmt.Fprintf(env.stderr, "run %s of %s goes on; kill it with: andromeda kill %s\n", run.ID, run.Service, run.ID)
		return errInterrupted
	}
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	res, err := c.Cancel(ctx, run.ID)
	if err != nil {
		return fmt.Errorf("cancel run %s: %w", run.ID, err)
	}
	printCancel(env.stderr, res)
	return errInterrupted
}

// A terminal is what standard input is when a person can answer a
// prompt. A test's reader says so by having a Terminal method.
type terminal interface{ Terminal() bool }

func (env *cli) stdinTerminal() bool {
	if t, ok := env.stdin.(terminal); ok {
		return t.Terminal()
	}
	if env.stdin != nil {
		return false
	}
	fi, err := os.Stdin.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// confirm asks question on standard error and reports whether the answer
// read from standard input is yes. End of input, or a second Ctrl-C, is
// no.
func (env *cli) confirm(question string) bool {
	fmt.Fprint(env.stderr, question)
	in := env.stdin
	if in == nil {
		in = os.Stdin
	}
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(in).ReadString('\n')
		answer <- line
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	select {
	case line := <-answer:
		a := strings.ToLower(strings.TrimSpace(line))
		return a == "y" || a == "yes"
	case <-sig:
		fmt.Fprintln(env.stderr)
		return false
	}
}

func (env *cli) killCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kill RUN_ID",
		Short: "Cancel a run in flight",
		Long: `Kill cancels a run in flight: the node asks the guest to stop (the runtime
protocol's cancel message), kills it if it has not stopped within the
driver's grace (a server-mode worker is replaced), and records the run as
cancelled, naming who cancelled it. Kill waits until the run is recorded
and prints when. A run that already finished is refused with its outcome.
An operator may kill every run; a submitter the runs of its own services.`,
		Example: `  andromeda runs --running
  andromeda kill 06h3a2nyj3pfa646574g`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.ValidArgsFunction = env.runningIDs(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.CancelResult, error) { return c.Cancel(cmd.Context(), args[0]) }, printCancel)
	}
	return cmd
}

// printCancel prints the answer to a kill.
func printCancel(w io.Writer, res api.CancelResult) {
	if res.Recorded == nil {
		fmt.Fprintf(w, "cancelling run %s of %s (asked by %s); not recorded yet: see andromeda runs show %s\n", res.Run.ID, res.Run.Service, res.Run.CancelledBy, res.Run.ID)
		return
	}
	fmt.Fprintf(w, "cancelled run %s of %s: recorded %s at %s (%s after it was asked)\n", res.Recorded.ID, res.Recorded.Service,
		res.Recorded.Outcome, res.RecordedAt.Local().Format(time.RFC3339Nano), roundDur(res.RecordedAt.Sub(res.Run.CancelledAt)))
}

// runningIDs completes the ids of the runs in flight.
func (env *cli) runningIDs(cf *clientFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := env.client(cf)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		defer cancel()
		runs, err := c.Running(ctx, "")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, r := range runs {
			if strings.HasPrefix(r.ID, toComplete) {
				out = append(out, cobra.CompletionWithDesc(r.ID, r.Service))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// runningRuns is `runs --running [NAME]`.
func (env *cli) runningRuns(ctx context.Context, cf *clientFlags, args []string) error {
	name := ""
	if len(args) == 1 {
		name = args[0]
	}
	return ask(env, cf, func(c *api.Client) ([]api.RunInFlight, error) {
		runs, err := c.Running(ctx, name)
		if runs == nil {
			runs = []api.RunInFlight{}
		}
		return runs, err
	}, printRunning)
}

// printRunning prints the runs in flight.
func printRunning(w io.Writer, runs []api.RunInFlight) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs in flight")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "RUN\tSERVICE\tVERSION\tTRIGGER\tSTARTED\tRUNNING\tSTATUS")
	now := time.Now()
	for _, r := range runs {
		status := r.Status
		if r.CancelledBy != "" {
			status += " (by " + r.CancelledBy + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Service, r.Version, r.Trigger.Kind+" "+r.Trigger.Name,
			r.Start.Local().Format("15:04:05"), roundDur(now.Sub(r.Start)), status)
	}
	tw.Flush()
}
