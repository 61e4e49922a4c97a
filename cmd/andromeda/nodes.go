package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
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
	p := paletteOf(w)
	tw := table(w)
	fmt.Fprintf(tw, "NAME\t%s\tHEARTBEAT\tAPI\tSERVICES\tDRIVERS\tLABELS\n", p.word("HEALTH"))
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
		services := strconv.Itoa(n.Services)
		if n.ServicesMax > 0 {
			services += "/" + strconv.Itoa(n.ServicesMax)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, p.word(string(n.Health)), beat, n.API, services,
			orDash(strings.Join(n.Drivers, ",")), orDash(strings.Join(slices.Sorted(slices.Values(labels)), ",")))
	}
	tw.Flush()
}

func (env *cli) drainCmd() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "drain",
		Short: "Hand a node's services over to the other nodes of its cluster, before stopping it",
		Long: `Drain asks the node (--node) to hand its services over to the other nodes
of its cluster: from now on it says "draining" in the node registry, the
other nodes take each of its services over at their next heartbeats (the
same turn order as for a node gone, among the nodes that run the
service's driver), and it gives each up once another node holds it. It
takes nothing over itself, and stays draining until it stops: drain,
then stop the node, upgrade it and start it again, one node at a time.

Drain waits (--wait, 0 not at all) until the node runs no service,
printing how many are left as they go, and fails naming what is left if
the time runs out (no other node up runs their driver, say). A node
alone cannot drain: there is nowhere to go.`,
		Example: `  andromeda drain --node 10.0.0.2:7070
  andromeda drain --wait 5m && systemctl restart andromeda`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.Flags().DurationVar(&wait, "wait", 2*time.Minute, "wait up to `D` for the node to run no service (0: do not wait)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := env.client(cf)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		n, err := c.Drain(ctx)
		if err != nil {
			return err
		}
		if !cf.json {
			fmt.Fprintf(env.stdout, "node %s is draining: %d services to hand over\n", n.Name, n.Services)
		}
		for end, left := time.Now().Add(wait), n.Services; wait > 0 && n.Services > 0; {
			if time.Now().After(end) {
				return fmt.Errorf("drain: node %s still runs %d services after %v: is another node up with their drivers? (andromeda nodes)", n.Name, n.Services, wait)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
			ns, err := c.Nodes(ctx)
			if err != nil {
				return err
			}
			if i := slices.IndexFunc(ns, func(m api.ClusterNode) bool { return m.Self }); i >= 0 {
				n = ns[i]
			}
			if n.Services != left && !cf.json {
				fmt.Fprintf(env.stdout, "%d left\n", n.Services)
			}
			left = n.Services
		}
		if cf.json {
			return printJSON(env.stdout, n)
		}
		if wait > 0 {
			fmt.Fprintf(env.stdout, "node %s runs no service: stop it now\n", n.Name)
		}
		return nil
	}
	return cmd
}

func (env *cli) forwardsCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "forwards",
		Short: "List the services this node forwarded or advertised to its peers, and what came of each",
		Long: `Forwards lists, newest first, the services the node did not run but
forwarded to a peer (policy.peers, with the tokens in forwarding.peers),
and those it runs and offered to peers (policy.advertise): the peer that
answered, whether it runs the service (run), refused it (rejected) or no
peer answered (unreachable), the peers skipped on the way and why. --json adds both signed decisions (this node's to forward,
the peer's answer), which andromeda verify receipt checks.`,
		Example: `  andromeda forwards
  andromeda forwards --json --limit 1 | jq '.[0].peer_receipt'`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.Flags().IntVar(&limit, "limit", 20, "list at most `N` (1 to 1000)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, cf, func(c *api.Client) ([]api.Forward, error) { return c.Forwards(cmd.Context(), limit) }, printForwards)
	}
	return cmd
}

func printForwards(w io.Writer, fs []api.Forward) {
	if len(fs) == 0 {
		fmt.Fprintln(w, "no service forwarded")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "AT\tKIND\tSERVICE\tPEER\tOUTCOME\tDETAIL")
	for _, f := range fs {
		detail := f.Detail
		if len(f.Skipped) > 0 {
			detail += " (skipped: " + strings.Join(f.Skipped, "; ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\n", f.At.Local().Format(time.DateTime), f.Kind, f.Service, f.Version, orDash(f.Peer), f.Outcome, detail)
	}
	tw.Flush()
}

func (env *cli) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the cluster: its nodes, and how each stream of the store is replicated",
		Args:  wantArgs(0, 0),
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the nodes with their health, and each stream's replicas, leader and lag",
		Long: `Status shows the node registry (as andromeda nodes does) and every
stream of the store as JetStream replicates it: how many replicas, which
node leads it (none while it elects one), and for each other replica
whether it is current, how many operations it lags and when it was last
heard from. A replica that is not current, or a stream without a leader,
is what to look at after a node was lost.`,
		Example: `  andromeda cluster status
  andromeda cluster status --json | jq '.streams[] | select(.leader == "")'`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(status)
	status.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, cf, func(c *api.Client) (api.ClusterStatus, error) { return c.ClusterStatus(cmd.Context()) }, printClusterStatus)
	}
	cmd.AddCommand(status)
	cmd.Example = "  andromeda cluster status"
	return cmd
}

func printClusterStatus(w io.Writer, s api.ClusterStatus) {
	if s.Cluster != "" {
		fmt.Fprintf(w, "cluster %s\n\n", s.Cluster)
	} else {
		fmt.Fprint(w, "a node alone\n\n")
	}
	printNodes(w, s.Nodes)
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "STREAM\tREPLICAS\tLEADER\tOTHER REPLICAS\tMESSAGES")
	for _, st := range s.Streams {
		var peers []string
		for _, p := range st.Peers {
			state := "current"
			switch {
			case p.Offline:
				state = "offline"
			case !p.Current:
				state = fmt.Sprintf("behind %d", p.Lag)
			}
			peers = append(peers, p.Name+" "+state)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\n", st.Name, st.Replicas, orDash(st.Leader), orDash(strings.Join(peers, ", ")), st.Messages)
	}
	tw.Flush()
}
