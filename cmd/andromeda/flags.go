package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// clientFlags are the flags of every command that talks to a node.
type clientFlags struct {
	addr, token, data, context string
	json                       bool
	output                     string // "", table, wide or json (addOutputFlag)
}

// addOutputFlag adds -o/--output to a listing: table (the default), wide
// (more columns, nothing cut short) or json (the same as --json).
func addOutputFlag(cmd *cobra.Command, cf *clientFlags) {
	cmd.Flags().StringVarP(&cf.output, "output", "o", "", "`FORMAT`: table, wide (more columns, nothing cut short) or json")
	cmd.RegisterFlagCompletionFunc("output", words("table", "wide", "json"))
}

// wide reads --output: whether the table is the wide one; json is --json.
func (cf *clientFlags) wide() (bool, error) {
	switch cf.output {
	case "", "table":
		return false, nil
	case "wide":
		return true, nil
	case "json":
		cf.json = true
		return false, nil
	}
	return false, usagef("--output: must be table, wide or json, not %q", cf.output)
}

// addClientFlags adds --node, --token, --data, --context and --json to
// cmd.
func addClientFlags(cmd *cobra.Command) *clientFlags {
	cf := new(clientFlags)
	cmd.Flags().StringVar(&cf.addr, "node", "", "reach the node at `ADDR` (default $ANDROMEDA_ADDR, the context's, or 127.0.0.1:7070)")
	cmd.Flags().StringVar(&cf.token, "token", "", "API `TOKEN` (default $ANDROMEDA_TOKEN, the context's, or the operator token in the data dir)")
	addDataFlag(cmd, &cf.data, "node data `DIR` to read the operator token from")
	cmd.Flags().StringVar(&cf.context, "context", "", "use the context `NAME` (default $ANDROMEDA_CONTEXT or the current one; see andromeda context)")
	addJSONFlag(cmd, &cf.json)
	return cf
}

// addDataFlag adds --data, the node's data dir, to cmd.
func addDataFlag(cmd *cobra.Command, p *string, what string) {
	cmd.Flags().StringVar(p, "data", "", what+" (default $ANDROMEDA_DATA or the node default)")
	cmd.MarkFlagDirname("data")
}

// addJSONFlag adds --json to cmd.
func addJSONFlag(cmd *cobra.Command, p *bool) {
	cmd.Flags().BoolVar(p, "json", false, "print one JSON document instead of text")
}

// dataDir is the node data dir: --data, else $ANDROMEDA_DATA, else the
// node's default.
func (env *cli) dataDir(flag string) string {
	return firstNonEmpty(flag, env.getenv("ANDROMEDA_DATA"), node.DefaultDataDir())
}

// client is the API client the client flags, the environment and the
// context name. A context named (--context, $ANDROMEDA_CONTEXT) gives what
// the flags and the environment leave out; the current context is used
// only when neither names a node, a token or a data dir, so that a token
// remembered for one node is never sent to another.
func (env *cli) client(cf *clientFlags) (*api.Client, error) {
	explicit := firstNonEmpty(cf.addr, env.getenv("ANDROMEDA_ADDR"), cf.token, env.getenv("ANDROMEDA_TOKEN"), cf.data, env.getenv("ANDROMEDA_DATA")) != ""
	var nc nodeContext
	if named := firstNonEmpty(cf.context, env.getenv("ANDROMEDA_CONTEXT")) != ""; named || !explicit {
		c, _, ok, err := env.activeContext(cf.context)
		if err != nil {
			return nil, err
		}
		if ok {
			nc = c
		}
	}
	addr := firstNonEmpty(cf.addr, env.getenv("ANDROMEDA_ADDR"), nc.Node, node.DefaultConfig().Listen)
	token := firstNonEmpty(cf.token, env.getenv("ANDROMEDA_TOKEN"))
	if token == "" && cf.data == "" && env.getenv("ANDROMEDA_DATA") == "" {
		token = nc.Token
		if token == "" && nc.Data != "" {
			t, err := node.OperatorToken(nc.Data)
			if err != nil {
				return nil, fmt.Errorf("no token: the context's data dir %s holds no readable operator token: %v", nc.Data, err)
			}
			token = t
		}
	}
	if token == "" {
		dir := env.dataDir(cf.data)
		t, err := node.OperatorToken(dir)
		if err != nil {
			return nil, fmt.Errorf("no token: set ANDROMEDA_TOKEN or pass --token (no operator token readable in %s: %v)", dir, err)
		}
		token = t
	}
	return api.NewClient(addr, token), nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

// wantArgs accepts between min and max positional arguments (max < 0: no
// upper bound); other counts are a usage error.
func wantArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= min && (max < 0 || len(args) <= max) {
			return nil
		}
		var want string
		switch {
		case max == 0:
			want = "no arguments"
		case min == max:
			want = plural(min, "argument")
		case max < 0:
			want = "at least " + plural(min, "argument")
		default:
			want = fmt.Sprintf("%d to %d arguments", min, max)
		}
		got := "none"
		if len(args) > 0 {
			got = fmt.Sprintf("%d: %q", len(args), args)
		}
		name := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
		return &usageError{err: fmt.Errorf("%s takes %s, got %s", name, want, got), cmd: cmd}
	}
}

// normalizeArgs keeps the command lines the CLI took before it moved to
// cobra, when its flags were the standard library's: a long flag written
// with one dash (-json) gets two, and flags written before a group's
// subcommand (token --name ada create) move after it, where the
// subcommand that defines them parses them. A word that is not a
// subcommand of a group is a usage error. Shell completion
// requests pass unchanged.
func normalizeArgs(root *cobra.Command, args []string) ([]string, error) {
	if len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd) {
		return args, nil
	}
	cmd := root
	var words, rest []string
	descend := true
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			f := lookupFlag(cmd, name)
			if f != nil && len(name) > 1 && !strings.HasPrefix(a, "--") {
				a = "-" + a
			}
			rest = append(rest, a)
			if f != nil && f.NoOptDefVal == "" && !hasValue && i+1 < len(args) {
				i++
				rest = append(rest, args[i]) // the flag's value
			}
			continue
		}
		if descend {
			if sub := subcommand(cmd, a); sub != nil {
				words = append(words, a)
				cmd = sub
				continue
			}
			descend = false
			// A group is only its subcommands; a command that runs and
			// takes arguments besides (runs NAME, runs show ID) takes it.
			if cmd.HasSubCommands() && !(cmd.Runnable() && cmd.Args != nil) {
				msg := fmt.Sprintf("unknown command %q for %q", a, cmd.CommandPath())
				if cmd.SuggestionsMinimumDistance <= 0 {
					cmd.SuggestionsMinimumDistance = 2 // cobra's default, which SuggestionsFor leaves to its caller
				}
				if s := cmd.SuggestionsFor(a); len(s) > 0 {
					msg += fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
				}
				return nil, &usageError{err: fmt.Errorf("%s", msg), cmd: cmd}
			}
		}
		rest = append(rest, a)
	}
	return append(words, rest...), nil
}

func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}

// helpFlag stands for the help flag cobra adds to every command when it
// runs.
var helpFlag = &pflag.Flag{Name: "help", Shorthand: "h", NoOptDefVal: "true"}

// lookupFlag finds a long flag of cmd or, while the subcommand is still to
// come, of the commands under it.
func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	if name == helpFlag.Name {
		return helpFlag
	}
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	if f := cmd.PersistentFlags().Lookup(name); f != nil {
		return f
	}
	for _, c := range cmd.Commands() {
		if f := lookupFlag(c, name); f != nil {
			return f
		}
	}
	return nil
}

// ask asks the node through a client made from cf and prints the answer:
// one JSON document with --json, else as text.
func ask[T any](env *cli, cf *clientFlags, call func(*api.Client) (T, error), text func(w io.Writer, v T)) error {
	c, err := env.client(cf)
	if err != nil {
		return err
	}
	v, err := call(c)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, v)
	}
	text(env.stdout, v)
	return nil
}
