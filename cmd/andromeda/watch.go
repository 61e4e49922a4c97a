package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

func (env *cli) watchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch [NAME]",
		Short: "Show what happens on the node, live: lifecycle steps, runs, log lines",
		Long: `Watch prints the node's events as they happen, one line each: services
admitted, deployed, started, stopped, unhealthy and healthy again; runs
started, their log lines, runs finished with their outcome. With NAME, only
that service's. A submitter sees only its own services.

The stream is GET /v1/watch (Server-Sent Events). Watch reconnects by itself
when the connection drops and resumes after the last event it printed, so
nothing stored in between is missed. --since ID starts after event ID
(every event's id is in --json), to catch up on what happened while watch
was not running; events are kept for 24 hours.`,
		Example: `  andromeda watch
  andromeda watch greeter
  andromeda watch --json | jq 'select(.kind == "run.finished")'`,
		Args: wantArgs(0, 1),
	}
	cf := addClientFlags(cmd)
	since := cmd.Flags().Uint64("since", 0, "start after the event with `ID` (default: only new events)")
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := env.client(cf)
		if err != nil {
			return err
		}
		q := api.WatchQuery{After: *since}
		if len(args) == 1 {
			q.Service = args[0]
		}
		return c.Watch(cmd.Context(), q, printEvent(env.stdout, cf.json, true))
	}
	return cmd
}

func (env *cli) logsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Show the lines a service wrote to standard output and error",
		Long: `Logs prints the lines a service's runs wrote (standard error, standard
output of a wasm reactor, log messages of the runtime protocol), oldest
first, each with its run's id; with --run, only that run's. -f keeps
printing lines as they are written, until interrupted.

Lines are kept per run in a bounded stream: a run's lines past its cap
(256 KiB, cut at 4 KiB a line, 100 lines a second after a burst of 1000
per service) are dropped and counted in one marker line, and the oldest
runs' lines go first after 24 hours or 96 MiB. They never go to the node's
own log.`,
		Example: `  andromeda logs greeter
  andromeda logs -f greeter
  andromeda logs greeter --run 01jd4k5m2n3p4q5r6s7t`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	follow := cmd.Flags().BoolP("follow", "f", false, "keep printing lines as they are written")
	run := cmd.Flags().String("run", "", "only the lines of run `ID`")
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := env.client(cf)
		if err != nil {
			return err
		}
		return c.Logs(cmd.Context(), args[0], api.LogQuery{Run: *run, Follow: *follow}, printEvent(env.stdout, cf.json, false))
	}
	return cmd
}

// printEvent prints each event as one line: its JSON with asJSON, else
// time, kind, service and what the kind has to say (withKind: as watch
// shows them; else as log lines).
func printEvent(w io.Writer, asJSON, withKind bool) func(api.WatchEvent) error {
	return func(ev api.WatchEvent) error {
		if asJSON {
			b, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}
		t := ev.Time.UTC().Format("15:04:05.000")
		if !withKind {
			run := ev.Run
			if run == "" {
				run = "-"
			}
			_, err := fmt.Fprintf(w, "%s %s %s\n", t, run, ev.Line)
			return err
		}
		var parts []string
		add := func(k, v string) {
			if v != "" {
				parts = append(parts, k+"="+v)
			}
		}
		add("version", ev.Version)
		add("phase", ev.Phase)
		add("run", ev.Run)
		add("trigger", ev.Trigger)
		add("outcome", ev.Outcome)
		tail := strings.Join(parts, " ")
		switch {
		case ev.Kind == api.WatchRunLog:
			tail += " | " + ev.Line
		case ev.Detail != "":
			tail += " " + oneLine(ev.Detail, 160)
		}
		_, err := fmt.Fprintf(w, "%s %-17s %s %s\n", t, ev.Kind, ev.Service, tail)
		return err
	}
}
