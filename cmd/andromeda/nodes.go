package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

func (env *cli) nodesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes of the cluster with their health, address and what they run",
		Long: `Nodes lists the node registry: every node that shares this node's store,
with its health as the answering node judges it (up; lost: no heartbeat
for the cluster's lost_after; left: stopped cleanly), its last heartbeat,
its API address, the drivers it runs and how many services, and its
labels. A node alone lists itself.`,
		Example: `  andromeda nodes
  andromeda nodes --json | jq '.[] | select(.health != "up") | .name'`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, cf, func(c *api.Client) ([]api.ClusterNode, error) { return c.Nodes(cmd.Context()) }, printNodes)
	}
	return cmd
}

func printNodes(w io.Writer, ns []api.ClusterNode) {
	tw := table(w)
	fmt.Fprintln(tw, "NAME\tHEALTH\tHEARTBEAT\tAPI\tSERVICES\tDRIVERS\tLABELS")
	for _, n := range ns {
		name := n.Name
		if n.Self {
			name += " (this)"
		}
		var labels []string
		for k, v := range n.Labels {
			labels = append(labels, k+"="+v)
		}
		beat := roundDur(time.Duration(n.BeatAgeMs*float64(time.Millisecond))).String() + " ago"
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", name, n.Health, beat, n.API, n.Services,
			orDash(strings.Join(n.Drivers, ",")), orDash(strings.Join(slices.Sorted(slices.Values(labels)), ",")))
	}
	tw.Flush()
}
