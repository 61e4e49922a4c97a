package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Contexts remember how to reach nodes, by a name of the user's: a node's
// address and either a token or the data dir its operator token is read
// from. One is current; --context and $ANDROMEDA_CONTEXT pick another for
// one command. They live in contexts.toml under $XDG_CONFIG_HOME/andromeda
// (default ~/.config/andromeda), mode 0600: it may hold tokens.

// contextFile is the contexts' file under the CLI's config dir.
const contextFile = "contexts.toml"

// nodeContext is one remembered node.
type nodeContext struct {
	Node  string `json:"node" toml:"node"`
	Token string `json:"token,omitempty" toml:"token,omitempty"`
	Data  string `json:"data,omitempty" toml:"data,omitempty"`
}

// contexts is the file's content.
type contexts struct {
	Current  string                 `json:"current,omitempty" toml:"current,omitempty"`
	Contexts map[string]nodeContext `json:"contexts" toml:"contexts"`
}

// contextsDoc names the contexts' file in its decoding errors.
type contextsDoc struct{}

func (contextsDoc) Name() string { return "contexts" }

var contextName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// configDir is the CLI's config dir: $XDG_CONFIG_HOME/andromeda, else
// $HOME/.config/andromeda; "" when neither is set.
func (env *cli) configDir() string {
	if d := env.getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "andromeda")
	}
	if h := env.getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "andromeda")
	}
	return ""
}

// loadContexts reads the contexts' file; a missing one is no contexts.
func (env *cli) loadContexts() (contexts, string, error) {
	cs := contexts{Contexts: map[string]nodeContext{}}
	dir := env.configDir()
	if dir == "" {
		return cs, "", nil
	}
	path := filepath.Join(dir, contextFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cs, path, nil
	}
	if err != nil {
		return cs, path, err
	}
	if err := (strictdoc.Decoder[contextsDoc]{MaxSize: 1 << 20, MaxDepth: 4, AllowEmpty: true}).Decode(strictdoc.TOML, b, &cs); err != nil {
		return cs, path, fmt.Errorf("%s: %w", path, err)
	}
	if cs.Contexts == nil {
		cs.Contexts = map[string]nodeContext{}
	}
	return cs, path, nil
}

// saveContexts writes the contexts' file whole, mode 0600, through a
// temporary file renamed into place.
func (env *cli) saveContexts(cs contexts) (string, error) {
	dir := env.configDir()
	if dir == "" {
		return "", errors.New("no config dir: set XDG_CONFIG_HOME or HOME")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	b, err := toml.Marshal(cs)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, contextFile)
	f, err := os.CreateTemp(dir, contextFile+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(f.Name(), 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(f.Name(), path)
}

// activeContext is the context a command uses: --context, else
// $ANDROMEDA_CONTEXT, else the current one; ok is false when there is
// none. A named context that does not exist is an error.
func (env *cli) activeContext(flag string) (nodeContext, string, bool, error) {
	name := firstNonEmpty(flag, env.getenv("ANDROMEDA_CONTEXT"))
	cs, path, err := env.loadContexts()
	if err != nil {
		return nodeContext{}, "", false, err
	}
	if name == "" {
		name = cs.Current
		if name == "" {
			return nodeContext{}, "", false, nil
		}
	}
	c, ok := cs.Contexts[name]
	if !ok {
		if path == "" {
			path = "(no config dir)"
		}
		return nodeContext{}, name, false, usagef("no context %q in %s (andromeda context ls lists them)", name, path)
	}
	return c, name, true, nil
}

func (env *cli) contextCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "Remember nodes by name: their address and token, one of them current",
		Long: `Context remembers how to reach nodes, so that a node started on another
port, with --data, or on another machine is one command away. A context is
a name, the node's address, and its token or the data dir its operator
token is read from. The current one is used by every client command;
--context NAME or $ANDROMEDA_CONTEXT picks another for one command.
--node, --token, --data, $ANDROMEDA_ADDR, $ANDROMEDA_TOKEN and
$ANDROMEDA_DATA still win over a context.

Contexts are kept in $XDG_CONFIG_HOME/andromeda/contexts.toml (default
~/.config/andromeda), mode 0600.`,
		Example: `  andromeda context add dev --node 127.0.0.1:7171 --data ./dev-data --use
  andromeda context add prod --node prod.example:7070 --token "$PROD_TOKEN"
  andromeda context ls
  andromeda context use prod
  andromeda ls --context dev`,
		Args: wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(env.contextAddCmd(), env.contextUseCmd(), env.contextLsCmd(), env.contextRmCmd())
	return cmd
}

// contextNames completes the first argument with the contexts' names.
func (env *cli) contextNames(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cs, _, _ := env.loadContexts()
	var out []cobra.Completion
	for _, name := range slices.Sorted(mapKeys(cs.Contexts)) {
		if strings.HasPrefix(name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(name, cs.Contexts[name].Node))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (env *cli) contextAddCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add NAME --node ADDR [--token TOKEN | --data DIR]",
		Short: "Remember a node under NAME (replacing a context of that name)",
		Long: `Add remembers a node: its address, and either its token or the data dir
its operator token is read from at each use (a relative dir is made
absolute). With --use it becomes the current context; the first context
added is current.`,
		Example: `  andromeda context add dev --node 127.0.0.1:7171 --data ./dev-data --use
  andromeda context add prod --node prod.example:7070 --token "$PROD_TOKEN"`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	var c nodeContext
	var use bool
	cmd.Flags().StringVar(&c.Node, "node", "", "the node's `ADDR` (host:port or URL)")
	cmd.Flags().StringVar(&c.Token, "token", "", "the API `TOKEN` to use")
	cmd.Flags().StringVar(&c.Data, "data", "", "the node's data `DIR`, to read its operator token from")
	cmd.MarkFlagDirname("data")
	cmd.Flags().BoolVar(&use, "use", false, "make it the current context")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		if !contextName.MatchString(name) {
			return usagef("NAME: must be 1 to 63 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
		}
		if strings.TrimSpace(c.Node) == "" {
			return usagef("--node: required (the node's address, as serve printed it)")
		}
		if c.Token != "" && c.Data != "" {
			return usagef("--token and --data: give one (a token, or the data dir to read the operator token from)")
		}
		if c.Data != "" {
			abs, err := filepath.Abs(c.Data)
			if err != nil {
				return err
			}
			c.Data = abs
		}
		cs, _, err := env.loadContexts()
		if err != nil {
			return err
		}
		_, replaced := cs.Contexts[name]
		cs.Contexts[name] = c
		if use || cs.Current == "" {
			cs.Current = name
		}
		path, err := env.saveContexts(cs)
		if err != nil {
			return err
		}
		verb := "added"
		if replaced {
			verb = "replaced"
		}
		fmt.Fprintf(env.stdout, "context %s %s (%s)", name, verb, path)
		if cs.Current == name {
			fmt.Fprint(env.stdout, "; current")
		}
		fmt.Fprintln(env.stdout)
		return nil
	}
	return cmd
}

// contextsWith reads the contexts, which must hold one named name.
func (env *cli) contextsWith(name string) (contexts, error) {
	cs, path, err := env.loadContexts()
	if err != nil {
		return cs, err
	}
	if _, ok := cs.Contexts[name]; !ok {
		return cs, usagef("no context %q in %s (andromeda context ls lists them)", name, path)
	}
	return cs, nil
}

func (env *cli) contextUseCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "use NAME",
		Short:             "Make NAME the current context",
		Long:              `Use makes NAME the context every client command uses from now on.`,
		Example:           `  andromeda context use prod`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: env.contextNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := env.contextsWith(args[0])
			if err != nil {
				return err
			}
			cs.Current = args[0]
			if _, err := env.saveContexts(cs); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "current context: %s (%s)\n", args[0], cs.Contexts[args[0]].Node)
			return nil
		},
	}
}

func (env *cli) contextRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "rm NAME",
		Short:             "Forget the context NAME",
		Long:              `Rm forgets a context; when it was current, none is.`,
		Example:           `  andromeda context rm dev`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: env.contextNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := env.contextsWith(args[0])
			if err != nil {
				return err
			}
			delete(cs.Contexts, args[0])
			if cs.Current == args[0] {
				cs.Current = ""
			}
			if _, err := env.saveContexts(cs); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "context %s removed\n", args[0])
			return nil
		},
	}
}

// contextView is a context as ls --json prints it: the token never.
type contextView struct {
	Name    string `json:"name"`
	Node    string `json:"node"`
	Auth    string `json:"auth"`
	Current bool   `json:"current"`
}

func (env *cli) contextLsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the contexts, the current one marked",
		Long: `Ls lists the contexts: name, node, and where the token comes from (a
token, shown by its first characters, or a data dir). The current one is
marked with *.`,
		Example: `  andromeda context ls
  andromeda context ls --json`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	var asJSON bool
	addJSONFlag(cmd, &asJSON)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cs, path, err := env.loadContexts()
		if err != nil {
			return err
		}
		var list []contextView
		for _, name := range slices.Sorted(mapKeys(cs.Contexts)) {
			c := cs.Contexts[name]
			list = append(list, contextView{Name: name, Node: c.Node, Auth: contextAuth(c), Current: name == cs.Current})
		}
		if asJSON {
			if list == nil {
				list = []contextView{}
			}
			return printJSON(env.stdout, list)
		}
		printContexts(env.stdout, list, path)
		return nil
	}
	return cmd
}

// contextAuth says where a context's token comes from, never the token.
func contextAuth(c nodeContext) string {
	switch {
	case c.Token != "":
		return "token " + c.Token[:min(len(c.Token), 8)] + "…"
	case c.Data != "":
		return "operator token in " + c.Data
	}
	return "-"
}

func printContexts(w io.Writer, list []contextView, path string) {
	if len(list) == 0 {
		if path == "" {
			path = "the config dir"
		}
		fmt.Fprintf(w, "no contexts (none in %s): andromeda context add NAME --node ADDR --data DIR\n", path)
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "CURRENT\tNAME\tNODE\tAUTH")
	for _, c := range list {
		mark := ""
		if c.Current {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mark, c.Name, c.Node, c.Auth)
	}
	tw.Flush()
}
