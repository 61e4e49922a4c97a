package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

func (env *cli) emitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "emit TOPIC JSON",
		Short: "Publish an event on a bus topic",
		Long: `Emit publishes a JSON message on a topic of the node's bus and prints its
sequence once the bus has stored it. Every service with an event trigger
on the topic runs once for it, the message as its input.

A topic is dot-separated tokens of [a-z0-9_-], at most 128 characters.
The operator may publish on any topic; a submitter only under its own
token name (alice.orders for token alice). The message is at most the
node's events.max_message (default 64 KiB).`,
		Example: `  andromeda emit orders.created '{"id": 42}'
  andromeda emit alice.ping '"hello"' --json`,
		Args:              wantArgs(2, 2),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if !json.Valid([]byte(args[1])) {
			return usagef("JSON: must be valid JSON (quote strings: '\"text\"')")
		}
		return ask(env, cf, func(c *api.Client) (api.Published, error) {
			return c.Publish(cmd.Context(), args[0], json.RawMessage(args[1]))
		}, printPublished)
	}
	return cmd
}

func printPublished(w io.Writer, p api.Published) {
	fmt.Fprintf(w, "published on %s as event %d\n", p.Topic, p.Sequence)
}

// printEmitted lists what became of a run's emits to bus topics.
func printEmitted(w io.Writer, r api.Run) {
	for _, e := range r.Emitted {
		if e.Error != "" {
			fmt.Fprintf(w, "Emitted: %s not published: %s\n", e.Topic, oneLine(e.Error, 500))
		} else {
			fmt.Fprintf(w, "Emitted: %s event %d\n", e.Topic, e.Sequence)
		}
	}
}
