package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

// natsCmd is `andromeda nats`: the node's NATS as other clients see it.
func (env *cli) natsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "Credentials of NATS clients of the node's bus",
		Long: `The node's embedded NATS server accepts clients on nats.listen, each with
a credential the node issued; it never serves an open bus. A client
publishes events on subject andromeda.events.TOPIC, for topics under its
owner's name (OWNER.…) and the public topics; the operator's credentials
on every topic. It may subscribe only to its inbox (_INBOX.>), for
replies: no events, no state, no runs.`,
		Example: `  andromeda nats creds create sensor --owner alice
  andromeda nats creds list`,
	}
	creds := &cobra.Command{
		Use:   "creds",
		Short: "Issue, list and remove NATS client credentials",
		Example: `  andromeda nats creds create sensor --owner alice
  andromeda nats creds list --json
  andromeda nats creds rm sensor`,
	}
	creds.AddCommand(env.natsCredsCreateCmd(), env.natsCredsListCmd(), env.natsCredsRmCmd())
	cmd.AddCommand(creds)
	return cmd
}

func (env *cli) natsCredsCreateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Issue a credential for a NATS client (operator)",
		Long: `Create issues a credential for a NATS client of the node's embedded server
and prints its user name and password; the password is shown only once
(the node keeps its sha256). The client publishes on topics under OWNER
(default NAME) and on the public topics; --owner operator publishes on
every topic. A client whose subjects change (a topic becomes public or
stops being so) is disconnected, and reconnects with what it may do then.`,
		Example: `  andromeda nats creds create sensor --owner alice
  andromeda nats creds create bridge --owner operator --json`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	owner := cmd.Flags().String("owner", "", "`OWNER` whose topics (OWNER.…) it publishes on; operator for every topic (default NAME)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		create := func(c *api.Client) (api.NATSUser, error) {
			return c.CreateNATSUser(cmd.Context(), args[0], *owner)
		}
		return ask(env, cf, create, printNATSUserCreated)
	}
	return cmd
}

func printNATSUserCreated(w io.Writer, u api.NATSUser) {
	fmt.Fprintf(w, "created NATS credential %q for owner %s; the password is shown only once:\n", u.Name, u.Owner)
	fmt.Fprintf(w, "user:     %s\npassword: %s\n", u.Name, u.Secret)
	fmt.Fprintf(w, "publish:  %s\n", strings.Join(u.Publish, " "))
	server := u.Server
	if server == "" {
		fmt.Fprintln(w, "The node's NATS does not listen for clients: set nats.listen in its config.")
		server = "nats://HOST:PORT"
	}
	topic := u.Owner + ".example"
	if u.Owner == "operator" {
		topic = "orders.new"
	}
	fmt.Fprintf(w, "try: nats pub --server %s --user %s --password %s andromeda.events.%s '{\"hello\": 1}'\n", server, u.Name, u.Secret, topic)
}

func (env *cli) natsCredsListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the NATS credentials issued (operator)",
		Example: `  andromeda nats creds list
  andromeda nats creds list --json`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		list := func(c *api.Client) ([]api.NATSUser, error) {
			us, err := c.NATSUsers(cmd.Context())
			if us == nil {
				us = []api.NATSUser{}
			}
			return us, err
		}
		return ask(env, cf, list, func(w io.Writer, us []api.NATSUser) {
			if len(us) == 0 {
				fmt.Fprintln(w, "no NATS credentials")
				return
			}
			tw := table(w)
			fmt.Fprintln(tw, "NAME\tOWNER\tCREATED\tPUBLISH")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Owner, ago(u.Created), strings.Join(u.Publish, " "))
			}
			tw.Flush()
		})
	}
	return cmd
}

func (env *cli) natsCredsRmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a NATS credential and close its connections (operator)",
		Example: `  andromeda nats creds rm sensor
  andromeda nats creds rm sensor --json`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		remove := func(c *api.Client) (map[string]string, error) {
			return map[string]string{"removed": args[0]}, c.RemoveNATSUser(cmd.Context(), args[0])
		}
		return ask(env, cf, remove, func(w io.Writer, _ map[string]string) { fmt.Fprintf(w, "removed NATS credential %s\n", args[0]) })
	}
	return cmd
}
