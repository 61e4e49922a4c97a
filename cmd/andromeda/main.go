// Command andromeda is the Andromeda runner: `andromeda serve` runs a node;
// every other subcommand talks to a node through its HTTP API, or works
// offline on files. The command tree is built on spf13/cobra: one
// constructor per command, next to the code it runs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/docker"
	"github.com/andromeda-runner/andromeda/sandbox/process"
)

func main() {
	// When the process driver re-executes this binary as a sandbox init,
	// this never returns.
	process.MaybeInit()
	// When the docker driver runs this binary in a container as the relay
	// of a worker's streams, this never returns either.
	docker.MaybeRelay()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		printError(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// usageError is an error in how a command was called: an unknown command
// or flag, a bad flag value, the wrong number of arguments. It exits 2.
type usageError struct {
	err error
	cmd *cobra.Command // the command called wrong, for the hint; set by run
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}

// exitCode is 2 for a usage error, 4 when the node refused the token (401
// or 403) and 1 for any other error.
func exitCode(err error) int {
	var ue *usageError
	var ae *api.Error
	switch {
	case errors.As(err, &ue):
		return 2
	case errors.As(err, &ae) && ae.Status == 401, errors.As(err, &ae) && ae.Status == 403:
		return 4
	}
	return 1
}

// printError prints err, and after a usage error how to get help.
func printError(w io.Writer, err error) {
	fmt.Fprintln(w, "andromeda:", err)
	var ue *usageError
	if !errors.As(err, &ue) || ue.cmd == nil {
		return
	}
	if ue.cmd.Runnable() {
		fmt.Fprintln(w, "usage:", ue.cmd.UseLine())
	}
	fmt.Fprintf(w, "Run '%s --help' for more.\n", ue.cmd.CommandPath())
}

// cli is what every subcommand gets: output streams and how to reach the
// node.
type cli struct {
	stdout, stderr io.Writer
	stdin          io.Reader // nil: the process's standard input
	getenv         func(string) string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	env := &cli{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	return env.run(ctx, args)
}

// run runs the command args name on a fresh command tree (cobra keeps
// parsed flags in its commands).
func (env *cli) run(ctx context.Context, args []string) error {
	env.withColor()
	root := env.root()
	args, err := normalizeArgs(root, args)
	if err != nil {
		return err
	}
	root.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	if env.stdin != nil {
		root.SetIn(env.stdin)
	}
	cmd, err := root.ExecuteContextC(ctx)
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd == nil {
		ue.cmd = cmd
	}
	return err
}

// The groups of the root command's help.
const (
	groupNode     = "node"
	groupServices = "services"
	groupTrust    = "trust"
	groupOffline  = "offline"
)

// root builds the command tree.
func (env *cli) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "andromeda",
		Short: "Run services under an operator's policy, and talk to the node that runs them",
		Long: `Andromeda is a runner: "andromeda serve" runs a node, which admits services
by its operator's policy, runs them sandboxed, fires them on triggers and
records every run. The other commands talk to a node through its HTTP API,
or work offline on files.

Client commands reach the node at $ANDROMEDA_ADDR (default 127.0.0.1:7070)
with the token in $ANDROMEDA_TOKEN, or else the operator token in the data
dir ($ANDROMEDA_DATA, default the node's default data dir); --node, --token
and --data override them. Without any of those, the current context is
used: "andromeda context add" remembers a node by name. Tables are for people; --json prints one JSON
document for scripts.

Exit status: 0 on success, 1 on an error, 2 on a usage error (an unknown
command or flag, a bad flag value, a wrong argument), 4 when the node
refuses the token (HTTP 401 or 403).`,
		Example: `  andromeda serve --demo
  andromeda ls
  andromeda fire greeter --input '{"name":"Ada"}'
  andromeda help runs`,
		SilenceErrors: true, // run's caller prints them, with the exit code
		SilenceUsage:  true,
	}
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: err, cmd: cmd}
	})
	root.AddGroup(
		&cobra.Group{ID: groupNode, Title: "Run a node:"},
		&cobra.Group{ID: groupServices, Title: "Services on a node:"},
		&cobra.Group{ID: groupTrust, Title: "Tokens, keys and policy:"},
		&cobra.Group{ID: groupOffline, Title: "Offline:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add(groupNode, env.serveCmd(), env.contextCmd(), env.nodesCmd(), env.clusterCmd(), env.drainCmd(), env.forwardsCmd())
	add(groupServices, env.submitCmd(), env.lsCmd(), env.inspectCmd(), env.fireCmd(), env.runCmd(), env.killCmd(), env.emitCmd(), env.runsCmd(), env.whyCmd(), env.watchCmd(), env.logsCmd(), env.usageCmd(), env.stateCmd(), env.rmCmd(), env.depsCmd(), env.testCmd(), env.offerCmd(), env.runtimesCmd(), env.flowCmd(), env.selftestCmd(), env.cpCmd(), env.filesCmd(), env.deployCmd(), env.startCmd(), env.stopCmd(), env.configCmd(), env.verifyCmd())
	add(groupTrust, env.tokenCmd(), env.natsCmd(), env.secretsCmd(), env.withSigningKeys(env.keysCmd()), env.withDelegation(env.attestCmd()), env.trustCmd(), env.policyCmd())
	add(groupOffline, env.storeCmd(), env.conformanceCmd(), env.versionCmd())
	root.SetHelpCommand(helpCmd(root))
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	completionExamples(root)
	return root
}

// helpCmd is `andromeda help [COMMAND]...`: cobra's, except that an unknown
// command is a usage error rather than the root's help.
func helpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]...",
		Short: "Help about any command",
		Long:  `Help prints the help of any command, on standard output.`,
		Example: `  andromeda help
  andromeda help runs
  andromeda help store check`,
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(_ *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err == nil && len(rest) > 0 {
				err = fmt.Errorf("unknown command %q for %q", rest[0], cmd.CommandPath())
			}
			if err != nil {
				return &usageError{err: err, cmd: root}
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		},
	}
}

func (env *cli) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Example: `  andromeda version
  andromeda version --json`,
		Args: wantArgs(0, 0),
		RunE: func(*cobra.Command, []string) error {
			if asJSON {
				return printJSON(env.stdout, map[string]string{"version": node.Version})
			}
			fmt.Fprintln(env.stdout, "andromeda", node.Version)
			return nil
		},
	}
	addJSONFlag(cmd, &asJSON)
	return cmd
}
