package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

func (env *cli) stateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state NAME",
		Short: "Show a service's state: its values, revision and last writers",
		Long: `State shows the state object a service's runs read and write: each key
with its JSON value, the revision, and the runs that wrote the newest
revisions (every committed revision names its run: look one up with
andromeda runs show ID).`,
		Example: `  andromeda state price-watch
  andromeda state price-watch --json`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.State, error) { return c.State(cmd.Context(), args[0]) }, printState)
	}
	return cmd
}

func printState(w io.Writer, s api.State) {
	fmt.Fprintf(w, "Service:   %s\nRevision:  %d\n", s.Service, s.Revision)
	if n := len(s.Writers); n > 0 {
		fmt.Fprintf(w, "Writers:   %d, newest %s\n", n, s.Writers[n-1])
	}
	if len(s.Values) == 0 {
		fmt.Fprintln(w, "Values:    none")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "KEY\tVALUE")
	for _, k := range slices.Sorted(maps.Keys(s.Values)) {
		var v any
		b := []byte(s.Values[k])
		if json.Unmarshal(b, &v) == nil {
			b, _ = json.Marshal(v)
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, oneLine(string(b), 200))
	}
	tw.Flush()
}
