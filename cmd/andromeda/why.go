package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

func (env *cli) whyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "why NAME",
		Short: "Show every trigger evaluation of a service and what became of it",
		Long: `Why answers "why didn't it run?": it lists every evaluation of the
service's triggers in a window, newest first (time, trigger, what happened,
run id, reason), then one line per trigger summing them up.

What happened is one of: ran (with the run's outcome), skipped (unhealthy,
concurrency, rate cap), missed (ticks that fell due while the node was
down; the trigger's catch_up says what ran of them), rejected (the output
broke a declared capability or cap), dead letter (an event whose runs
failed events.max_deliver times). A cron trigger's line says when it is
next due (it is "not due" before that); an event trigger's line says how
many events are still waiting. Times are UTC.

T in --since is a duration before now (30m, 1h, 7d) or an RFC 3339 time.`,
		Example: `  andromeda why heartbeat
  andromeda why heartbeat --since 24h
  andromeda why greeter --json | jq '.evaluations[] | select(.result != "ran")'`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	since := cmd.Flags().String("since", "1h", "look back to `T`: a duration before now (30m, 1h, 7d) or an RFC 3339 time")
	cmd.ValidArgsFunction = env.serviceNames(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		t, err := parseWhen("since", *since, time.Now())
		if err != nil {
			return err
		}
		return ask(env, cf, func(c *api.Client) (api.Why, error) { return c.Why(cmd.Context(), args[0], t) }, printWhy)
	}
	return cmd
}

// whyTime is how why writes a time: to the second, UTC.
func whyTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func printWhy(w io.Writer, why api.Why) {
	fmt.Fprintf(w, "%s: trigger evaluations from %s to %s UTC, newest first\n\n", why.Service, whyTime(why.Since), whyTime(why.Until))
	if len(why.Evaluations) == 0 {
		fmt.Fprintln(w, "no evaluations in the window")
	} else {
		tw := table(w)
		fmt.Fprintln(tw, "TIME\tTRIGGER\tWHAT\tRUN\tREASON")
		for _, e := range why.Evaluations {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", whyTime(e.At), e.Trigger, whatHappened(e), e.RunID, oneLine(e.Reason, 100))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	for _, t := range why.Triggers {
		fmt.Fprintln(w, triggerSummary(t))
	}
	if why.Truncated {
		fmt.Fprintf(w, "\nnote: more than %d evaluations in the window; the oldest are left out (narrow --since)\n", api.MaxWhy)
	}
	for _, n := range why.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
}

// whatHappened is the WHAT column: the result, with the outcome of a run
// and the cause of a skip.
func whatHappened(e api.WhyEvaluation) string {
	switch e.Result {
	case api.WhyRan:
		return "ran (" + e.Outcome + ")"
	case api.WhySkipped:
		return "skipped (" + e.Cause + ")"
	case api.WhyMissed:
		return fmt.Sprintf("missed %d ticks", e.Ticks)
	case api.WhyDeadLetter:
		return "dead letter"
	}
	return e.Result
}

// triggerSummary is one trigger's line: "triggers[0] cron every 10s: 360
// evaluations, 355 ran, 5 skipped (unhealthy), next due 12:00:10".
func triggerSummary(t api.WhyTrigger) string {
	head := t.Name + " " + t.Kind
	if t.Spec != "" && t.Spec != t.Kind {
		head += " " + strings.TrimPrefix(t.Spec, t.Kind+" ")
	}
	parts := []string{plural(t.Evaluations, "evaluation")}
	if n := t.Results[api.WhyRan]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d ran%s", n, breakdown(t.Outcomes, "ok")))
	}
	if n := t.Results[api.WhySkipped]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped%s", n, breakdown(t.Skipped, "")))
	}
	if t.MissedTicks > 0 {
		parts = append(parts, plural(t.MissedTicks, "missed tick"))
	}
	if n := t.Results[api.WhyRejected]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d rejected", n))
	}
	if n := t.Results[api.WhyDeadLetter]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d dead-lettered", n))
	}
	switch {
	case !t.Next.IsZero():
		next := t.Next.UTC().Format("15:04:05")
		if time.Until(t.Next) > 24*time.Hour {
			next = whyTime(t.Next)
		}
		parts = append(parts, "next due "+next)
	case t.Kind == "cron":
		parts = append(parts, "not scheduled on this node")
	}
	if t.Waiting != nil {
		parts = append(parts, fmt.Sprintf("%d waiting", *t.Waiting))
	}
	return head + ": " + strings.Join(parts, ", ")
}

// breakdown is " (unhealthy, 2 concurrency)"-style detail of counts: the
// bare name when it is the only one, nothing when it is only plain.
func breakdown(counts map[string]int, plain string) string {
	keys := slices.Sorted(maps.Keys(counts))
	if len(keys) == 0 || len(keys) == 1 && keys[0] == plain {
		return ""
	}
	if len(keys) == 1 {
		return " (" + keys[0] + ")"
	}
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%d %s", counts[k], k))
	}
	return " (" + strings.Join(out, ", ") + ")"
}
