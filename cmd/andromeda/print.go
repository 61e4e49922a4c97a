package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + roundDur(-d).String()
	case d < time.Second:
		return "just now"
	}
	return roundDur(d).String() + " ago"
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(100 * time.Microsecond)
	case d < time.Minute:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// phaseOf is a service's phase for a table: "started (dormant)" for a
// started service deployed on its first trigger; a node that predates
// phases says only its status.
func phaseOf(s api.Service) string {
	switch {
	case s.Phase == "":
		return s.Status
	case s.Status == "dormant":
		return s.Phase + " (dormant)"
	}
	return s.Phase
}

func health(s api.Service) string {
	switch {
	case s.Phase != "" && s.Phase != api.PhaseStarted:
		return "-"
	case s.Health == nil:
		return "-"
	case s.Health.Healthy:
		return "healthy"
	}
	return fmt.Sprintf("unhealthy (%d failures)", s.Health.ConsecutiveFailures)
}

func printServices(w io.Writer, list []api.Service) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no services")
		return
	}
	p := paletteOf(w)
	tw := table(w)
	fmt.Fprintf(tw, "NAME\tVERSION\tDRIVER\t%s\t%s\tTRIGGERS\tOWNER\tDIGEST\n", p.word("PHASE"), p.word("HEALTH"))
	for _, s := range list {
		var trig []string
		for _, t := range s.Triggers {
			trig = append(trig, t.Spec)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Version, s.Decision.Driver, p.word(phaseOf(s)), p.word(health(s)),
			orDash(strings.Join(trig, ", ")), orDash(s.Owner), shortDigest(s.Digest))
	}
	tw.Flush()
}

func printService(w io.Writer, s api.Service) {
	tw := table(w)
	fmt.Fprintf(tw, "Name:\t%s\n", s.Name)
	fmt.Fprintf(tw, "Version:\t%s\n", s.Version)
	fmt.Fprintf(tw, "Digest:\t%s\n", s.Digest)
	if s.Revision > 0 {
		fmt.Fprintf(tw, "Revision:\t%d, config %s\n", s.Revision, s.ConfigDigest)
	}
	fmt.Fprintf(tw, "Size:\t%s in %d files\n", size(s.Size), s.Files)
	fmt.Fprintf(tw, "Owner:\t%s\n", orDash(s.Owner))
	fmt.Fprintf(tw, "Submitted:\t%s (%s)\n", s.SubmittedAt.Format(time.RFC3339), ago(s.SubmittedAt))
	fmt.Fprintf(tw, "Phase:\t%s\n", s.Phase)
	fmt.Fprintf(tw, "Status:\t%s\n", s.Status)
	if s.StatusDetail != "" {
		fmt.Fprintf(tw, "Status detail:\t%s\n", s.StatusDetail)
	}
	fmt.Fprintf(tw, "Health:\t%s\n", health(s))
	if s.Health != nil && !s.Health.SkipUntil.IsZero() {
		fmt.Fprintf(tw, "Skipping ticks until:\t%s\n", s.Health.SkipUntil.Format(time.RFC3339))
	}
	d := s.Decision
	fmt.Fprintf(tw, "Decision:\t%s on driver %s, network %s\n", d.Verdict, d.Driver, d.Network)
	printPlacement(tw, s.Placement)
	fmt.Fprintf(tw, "Limits:\tmemory %s, cpu %g, timeout %s, pids %d, concurrency %d\n",
		size(d.Limits.Memory), d.Limits.CPU, time.Duration(d.Limits.TimeoutMS)*time.Millisecond, d.Limits.Pids, d.Limits.Concurrency)
	if s.Receipt != nil {
		fmt.Fprintf(tw, "Receipt:\tpolicy %s, signed by node %s at %s\n", s.Receipt.PolicyDigest, s.Receipt.NodeKey, s.Receipt.DecidedAt.Format(time.RFC3339))
	}
	tw.Flush()
	printReasons(w, d.Reasons)
	if len(s.Triggers) > 0 {
		fmt.Fprintln(w, "Triggers:")
		tw = table(w)
		for _, t := range s.Triggers {
			next := "-"
			if !t.Next.IsZero() {
				next = "next " + t.Next.Format(time.RFC3339) + " (" + ago(t.Next) + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", t.Name, t.Kind, t.Spec, next)
		}
		tw.Flush()
	}
}

func printReasons(w io.Writer, reasons []api.Reason) {
	fmt.Fprintln(w, "Reasons:")
	for _, r := range reasons {
		mark := "ok  "
		if !r.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-22s %s\n", mark, r.Rule, r.Detail)
	}
}

func printRuns(w io.Writer, runs []api.Run) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs")
		return
	}
	p := paletteOf(w)
	tw := table(w)
	fmt.Fprintf(tw, "RUN\tSERVICE\tVERSION\tTRIGGER\tSTARTED\tDURATION\t%s\tDETAIL\n", p.word("OUTCOME"))
	today := time.Now().Format("2006-01-02")
	for _, r := range runs {
		// The time alone for today's runs, with the date for older ones.
		started := r.Start.Local().Format("15:04:05")
		if day := r.Start.Local().Format("2006-01-02"); day != today {
			started = day + " " + started
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Service, runVersion(r), r.Trigger.Kind+" "+r.Trigger.Name,
			started, roundDur(r.Duration), p.word(r.Outcome), oneLine(runDetail(r), 80))
	}
	tw.Flush()
}

// runVersion is a run's service version, with its config revision.
func runVersion(r api.Run) string {
	if r.Revision > 0 {
		return fmt.Sprintf("%s r%d", r.Version, r.Revision)
	}
	return r.Version
}

// printRunsWide is printRuns with the node, the date, CPU, peak memory
// and each run's detail whole.
func printRunsWide(w io.Writer, runs []api.Run) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs")
		return
	}
	p := paletteOf(w)
	tw := table(w)
	fmt.Fprintf(tw, "RUN\tSERVICE\tVERSION\tNODE\tTRIGGER\tSTARTED\tDURATION\tCPU\tPEAK MEMORY\t%s\tDETAIL\n", p.word("OUTCOME"))
	for _, r := range runs {
		cpu, mem := "-", "-"
		if r.Usage.CPUNS > 0 {
			cpu = roundDur(time.Duration(r.Usage.CPUNS)).String()
		}
		if r.Usage.PeakMemory > 0 {
			mem = size(r.Usage.PeakMemory)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Service, runVersion(r), orDash(r.Node),
			r.Trigger.Kind+" "+r.Trigger.Name, r.Start.Local().Format(time.RFC3339), roundDur(r.Duration), cpu, mem, p.word(r.Outcome), oneLine(runDetail(r), 4096))
	}
	tw.Flush()
}

// printServicesWide is printServices with the node, the decision and the
// next tick of each service.
func printServicesWide(w io.Writer, list []api.Service) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no services")
		return
	}
	p := paletteOf(w)
	tw := table(w)
	fmt.Fprintf(tw, "NAME\tVERSION\tNODE\tDRIVER\t%s\t%s\t%s\tNETWORK\tTRIGGERS\tNEXT\tOWNER\tDIGEST\n", p.word("DECISION"), p.word("PHASE"), p.word("HEALTH"))
	for _, s := range list {
		var trig []string
		var next time.Time
		for _, t := range s.Triggers {
			trig = append(trig, t.Spec)
			if !t.Next.IsZero() && (next.IsZero() || t.Next.Before(next)) {
				next = t.Next
			}
		}
		nextText := "-"
		if !next.IsZero() {
			nextText = next.Local().Format("15:04:05") + " (" + ago(next) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Version, orDash(s.Node), s.Decision.Driver, p.word(string(s.Decision.Verdict)),
			p.word(phaseOf(s)), p.word(health(s)), orDash(s.Decision.Network), orDash(strings.Join(trig, ", ")), nextText, orDash(s.Owner), s.Digest)
	}
	tw.Flush()
}

func runDetail(r api.Run) string {
	switch {
	case r.Noop != "":
		return r.Noop
	case r.Error != "":
		return r.Error
	case r.Output != nil:
		var parts []string
		if n := len(r.Output.Actions); n > 0 {
			var kinds []string
			for _, a := range r.Output.Actions {
				kinds = append(kinds, a.Kind)
			}
			parts = append(parts, plural(n, "action")+": "+strings.Join(kinds, ", "))
		}
		if n := len(r.Output.Emit); n > 0 {
			var to []string
			for _, e := range r.Output.Emit {
				to = append(to, e.Topic+e.Port)
			}
			parts = append(parts, plural(n, "emit")+" to "+strings.Join(to, ", "))
		}
		return strings.Join(parts, ", ")
	}
	return ""
}

func printRun(w io.Writer, r api.Run) {
	tw := table(w)
	fmt.Fprintf(tw, "Run:\t%s\n", r.ID)
	fmt.Fprintf(tw, "Service:\t%s %s\n", r.Service, r.Version)
	if r.Revision > 0 {
		fmt.Fprintf(tw, "Revision:\t%d\n", r.Revision)
	}
	fmt.Fprintf(tw, "Trigger:\t%s %s\n", r.Trigger.Kind, r.Trigger.Name)
	if r.Trigger.Topic != "" {
		fmt.Fprintf(tw, "Event:\t%d on %s, published by %s\n", r.Trigger.Seq, r.Trigger.Topic, r.Trigger.Publisher)
	}
	fmt.Fprintf(tw, "Started:\t%s\n", r.Start.Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "Duration:\t%s\n", roundDur(r.Duration))
	fmt.Fprintf(tw, "Outcome:\t%s\n", paletteOf(w).word(r.Outcome))
	if r.Noop != "" {
		fmt.Fprintf(tw, "Reason:\t%s\n", r.Noop)
	}
	// An error may list several problems, one per line (a rejected
	// run's broken rules): each keeps its line.
	if r.Error != "" {
		label := "Error:"
		for _, line := range strings.Split(r.Error, "\n") {
			fmt.Fprintf(tw, "%s\t%s\n", label, oneLine(line, 2000))
			label = ""
		}
	}
	fmt.Fprintf(tw, "Usage:\twall %s", time.Duration(r.Usage.WallNS))
	if r.Usage.CPUNS > 0 {
		fmt.Fprintf(tw, ", cpu %s", time.Duration(r.Usage.CPUNS))
	}
	if r.Usage.PeakMemory > 0 {
		fmt.Fprintf(tw, ", peak memory %s", size(r.Usage.PeakMemory))
		if r.Usage.MemoryScope != "" {
			fmt.Fprintf(tw, " (%s)", r.Usage.MemoryScope)
		}
	}
	if r.Usage.NetworkRx > 0 || r.Usage.NetworkTx > 0 {
		fmt.Fprintf(tw, ", network %s in, %s out", size(r.Usage.NetworkRx), size(r.Usage.NetworkTx))
	}
	fmt.Fprintln(tw)
	if len(r.Usage.Counters) > 0 || r.Usage.CountersDropped > 0 {
		fmt.Fprintf(tw, "Counters:	%s", counters(r.Usage.Counters))
		if r.Usage.CountersDropped > 0 {
			fmt.Fprintf(tw, " (%d reports dropped)", r.Usage.CountersDropped)
		}
		fmt.Fprintln(tw)
	}
	if r.Attempts > 1 {
		fmt.Fprintf(tw, "Attempts:\t%d (state conflict retried)\n", r.Attempts)
	}
	tw.Flush()
	if r.Output != nil && (len(r.Output.Actions) > 0 || len(r.Output.Emit) > 0 || !r.Output.State.Empty()) {
		out := *r.Output
		out.Noop = ""
		b, _ := json.MarshalIndent(out, "  ", "  ")
		label := "its actions are executed by the node: see Executions"
		switch {
		case r.Outcome == "rejected":
			label = "rejected: none of it took effect"
		case r.Plan:
			label = "planned: nothing was executed, no state written, no run recorded"
		}
		fmt.Fprintf(w, "Output (%s):\n  %s\n", label, b)
	}
	if r.Truncated {
		fmt.Fprintln(w, "Output: dropped, the record was over the node's size cap")
	}
	printEmitted(w, r)
	printExecutions(w, r)
}

// printExecutions shows what became of each of a run's executions: one
// row each, then the envelope of a submit (it is what was signed).
func printExecutions(w io.Writer, r api.Run) {
	if len(r.Executions) == 0 {
		return
	}
	title := "Executions:"
	if r.Plan {
		title = "Would execute:"
	}
	fmt.Fprintln(w, title)
	tw := table(w)
	fmt.Fprintln(tw, "  ACTIONS\tKIND\tSTATE\tATTEMPTS\tANSWER\tDIGEST\tKEY")
	for _, e := range r.Executions {
		answer := "-"
		switch {
		case e.Status != 0:
			answer = fmt.Sprintf("%d %s", e.Status, oneLine(e.Response, 40))
		case e.Sequence != 0:
			answer = fmt.Sprintf("event %d", e.Sequence)
		}
		idx := make([]string, len(e.Actions))
		for i, a := range e.Actions {
			idx[i] = strconv.Itoa(a)
		}
		kind := e.Kind
		if e.Target != "" {
			kind += " → " + e.Target
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\n", strings.Join(idx, ","), kind, e.State, e.Attempts, strings.TrimSpace(answer), e.Digest, e.Key)
	}
	tw.Flush()
	for _, e := range r.Executions {
		if e.Error != "" {
			fmt.Fprintf(w, "  actions %v: %s\n", e.Actions, oneLine(e.Error, 500))
		}
		if e.State == "retry" && !e.NextRetry.IsZero() {
			fmt.Fprintf(w, "  actions %v: next attempt at %s\n", e.Actions, e.NextRetry.Local().Format(time.RFC3339))
		}
		if e.Envelope != "" {
			fmt.Fprintf(w, "  envelope to %s (%s):\n    %s\n", orDash(e.Endpoint), e.Digest, e.Envelope)
		}
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// size prints bytes in binary units.
func size(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGi", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMi", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKi", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
