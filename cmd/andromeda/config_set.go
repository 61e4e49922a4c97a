package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

func (env *cli) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "A service's config: get, set, and its revisions",
		Long: `Config reads and changes a service's config: the manifest's config, which
every run gets as input.config. A change is a new deployment revision,
recorded like a version: the service counts revisions (each version
submitted is one too), inspect shows the current one, every run records
the one it ran with, and config history lists them. A change is validated
and admitted by the node's policy like a submission; one that is refused
changes nothing. Runs that start after it get the new config; runs in
flight finish with theirs. Submitting a new version brings the config of
its manifest.`,
		Example: `  andromeda config get price-watch
  andromeda config set price-watch threshold_pct=5 endpoint=https://rebalancer.example/v2
  andromeda config history price-watch`,
	}

	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a service's config",
		Example: `  andromeda config get price-watch
  andromeda config get price-watch --revision 1 --json`,
		Args: wantArgs(1, 1),
	}
	getFlags := addClientFlags(get)
	revision := get.Flags().Int("revision", 0, "show revision `N`'s config instead of the current one")
	get.ValidArgsFunction = env.serviceNames(getFlags)
	get.RunE = func(cmd *cobra.Command, args []string) error {
		if *revision < 0 {
			return usagef("--revision: must be a revision number ≥ 1")
		}
		return ask(env, getFlags, func(c *api.Client) (api.ServiceConfig, error) {
			return c.ServiceConfig(cmd.Context(), args[0], *revision)
		}, printServiceConfig)
	}

	set := &cobra.Command{
		Use:   "set NAME KEY=VALUE...",
		Short: "Change a service's config as a new revision",
		Long: `Set changes keys of a service's config, all at once, as one new revision.
VALUE is JSON when it parses as JSON (5, true, [1,2], {"a":1}, "text"),
else the text itself; null removes the key. KEY may be a dotted path
(limits.max) into nested objects, which are created as needed; other keys
are kept. The answer is the new config.`,
		Example: `  andromeda config set price-watch threshold_pct=5
  andromeda config set price-watch limits.max=3 endpoint=https://rebalancer.example/v2
  andromeda config set price-watch endpoint=null`,
		Args: wantArgs(2, -1),
	}
	setFlags := addClientFlags(set)
	set.ValidArgsFunction = env.serviceNames(setFlags)
	set.RunE = func(cmd *cobra.Command, args []string) error {
		patch, err := configPatch(args[1:])
		if err != nil {
			return err
		}
		return ask(env, setFlags, func(c *api.Client) (api.ServiceConfig, error) {
			return c.SetConfig(cmd.Context(), args[0], patch)
		}, printServiceConfig)
	}

	history := &cobra.Command{
		Use:   "history NAME",
		Short: "List a service's deployment revisions",
		Long: `History lists the revisions of a service the node keeps (the newest 50),
oldest first: each version submitted and each config change, with the
config's digest, the keys a change set, who made it and when.`,
		Example: `  andromeda config history price-watch
  andromeda config history price-watch --json`,
		Args: wantArgs(1, 1),
	}
	historyFlags := addClientFlags(history)
	history.ValidArgsFunction = env.serviceNames(historyFlags)
	history.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, historyFlags, func(c *api.Client) ([]api.ConfigRevision, error) {
			return c.ConfigHistory(cmd.Context(), args[0])
		}, printConfigHistory)
	}
	cmd.AddCommand(get, set, history)
	return cmd
}

// configPatch turns KEY=VALUE arguments into a JSON merge patch: VALUE as
// JSON when it parses, else as a string; a dotted KEY nests.
func configPatch(args []string) (map[string]any, error) {
	patch := map[string]any{}
	for _, arg := range args {
		key, text, ok := strings.Cut(arg, "=")
		if !ok {
			return nil, usagef("%q: want KEY=VALUE", arg)
		}
		path := strings.Split(key, ".")
		if slices.Contains(path, "") {
			return nil, usagef("%q: KEY must be a name or a dotted path of names (a.b), without empty parts", arg)
		}
		var value any
		if err := json.Unmarshal([]byte(text), &value); err != nil {
			value = text
		}
		m := patch
		for i, part := range path[:len(path)-1] {
			next, ok := m[part].(map[string]any)
			if !ok {
				if _, set := m[part]; set {
					return nil, usagef("%q: %s is set to a value by another argument, so it cannot hold keys", arg, strings.Join(path[:i+1], "."))
				}
				next = map[string]any{}
				m[part] = next
			}
			m = next
		}
		last := path[len(path)-1]
		if _, set := m[last]; set {
			return nil, usagef("%q: %s is set twice", arg, key)
		}
		m[last] = value
	}
	return patch, nil
}

func printServiceConfig(w io.Writer, sc api.ServiceConfig) {
	state := ""
	if sc.Current {
		state = " (current)"
	}
	fmt.Fprintf(w, "Service:   %s\nRevision:  %d%s\nDigest:    %s\n", sc.Service, sc.Revision, state, sc.Digest)
	if len(sc.Config) == 0 {
		fmt.Fprintln(w, "Config:    none")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, k := range slices.Sorted(maps.Keys(sc.Config)) {
		b, _ := json.Marshal(sc.Config[k])
		fmt.Fprintf(tw, "%s\t%s\n", k, oneLine(string(b), 200))
	}
	tw.Flush()
}

func printConfigHistory(w io.Writer, revs []api.ConfigRevision) {
	if len(revs) == 0 {
		fmt.Fprintln(w, "no revisions recorded")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "REV\tCHANGE\tVERSION\tCONFIG\tKEYS\tBY\tAT")
	for _, r := range revs {
		rev := fmt.Sprint(r.Revision)
		if r.Current {
			rev += "*"
		}
		cfg := strings.TrimPrefix(r.ConfigDigest, "sha256:")
		cfg = cfg[:min(12, len(cfg))]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rev, r.Change, r.Version, cfg, orDash(strings.Join(r.Keys, ",")), r.By, r.At.UTC().Format(time.RFC3339))
	}
	tw.Flush()
}
