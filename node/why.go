package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// DefaultWhyWindow is the window of a why question that names no since.
const DefaultWhyWindow = time.Hour

// whyNotes say what the node does not record as evaluations, so an
// operator does not look for them in vain.
var whyNotes = []string{
	"deduplicated: not recorded as evaluations; an event delivered again after its run was recorded is acknowledged without a second run (logged: \"redelivered event already ran\")",
	"events still waiting for a slot are not evaluations yet: see waiting per event trigger",
}

// Why implements server.Backend's why question: every evaluation of
// service's triggers recorded since since (zero: the last hour), newest
// first, what became of each, and a summary per trigger. It reads the
// service's run records with the store's paging, at most api.MaxWhy of
// them. The owner or the operator may ask.
func (n *Node) Why(ctx context.Context, p server.Principal, service string, since time.Time) (api.Why, error) {
	if _, err := n.owned(ctx, p, service); err != nil {
		return api.Why{}, err
	}
	now := time.Now().UTC()
	if since.IsZero() {
		since = now.Add(-DefaultWhyWindow)
	}
	if !since.Before(now) {
		return api.Why{}, server.Errorf(server.ErrInvalid, "since: must be in the past")
	}
	w := api.Why{Service: service, Since: since.UTC(), Until: now, Evaluations: []api.WhyEvaluation{}, Notes: whyNotes}
	q := store.RunQuery{Since: since, Limit: store.MaxListRuns}
	// Pages may end early when the window filters many records out; a
	// bounded number of them reads the window or says it did not.
	for pages := 0; ; pages++ {
		if pages == 4*api.MaxWhy/store.MaxListRuns {
			w.Truncated = true
			break
		}
		page, err := n.store.ListServiceRuns(ctx, q, service)
		if err != nil {
			return api.Why{}, err
		}
		for _, r := range page.Runs {
			if !p.Operator() && r.Owner != p.Name {
				continue // a reused name's runs of its earlier owner
			}
			if len(w.Evaluations) == api.MaxWhy {
				w.Truncated = true
				break
			}
			w.Evaluations = append(w.Evaluations, evaluation(r))
		}
		if w.Truncated || page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	slices.SortStableFunc(w.Evaluations, func(a, b api.WhyEvaluation) int { return b.At.Compare(a.At) })
	w.Triggers = n.whyTriggers(ctx, service, w.Evaluations)
	return w, nil
}

// evaluation says what a run record stands for.
func evaluation(r store.Run) api.WhyEvaluation {
	e := api.WhyEvaluation{
		At: r.Start, Trigger: r.Trigger.Name, Kind: r.Trigger.Kind, Outcome: r.Outcome,
		RunID: r.ID, Reason: r.Noop, Seq: r.Trigger.Seq,
	}
	if at, err := time.Parse(time.RFC3339Nano, r.Trigger.At); err == nil {
		e.At = at.UTC()
	}
	if e.Reason == "" {
		e.Reason = r.Error
	}
	switch {
	case strings.HasPrefix(r.Error, "dead letter:"):
		e.Result = api.WhyDeadLetter
	case r.Outcome == string(sandbox.Skipped) && strings.HasPrefix(r.Noop, missedPrefix):
		e.Result = api.WhyMissed
		var of int
		fmt.Sscanf(r.Noop, missedPrefix+"%d of %d", &e.Ticks, &of)
	case r.Outcome == string(sandbox.Skipped):
		e.Result = api.WhySkipped
		e.Cause = skipCause(r.Noop)
	case r.Outcome == string(sandbox.Rejected):
		e.Result = api.WhyRejected
	default:
		e.Result = api.WhyRan
	}
	return e
}

// skipCause classifies the reason of a skipped run, as the node words it
// (invoke.go, actions.go).
func skipCause(reason string) string {
	switch {
	case strings.Contains(reason, "unhealthy"):
		return api.WhyCauseUnhealthy
	case strings.Contains(reason, "concurrency"):
		return api.WhyCauseConcurrency
	case strings.Contains(reason, "rate cap"):
		return api.WhyCauseRate
	}
	return api.WhyCauseOther
}

// whyTriggers sums evs up per trigger: the deployed service's triggers in
// manifest order with their next tick and waiting events, then any other
// trigger the records name (of an earlier version).
func (n *Node) whyTriggers(ctx context.Context, service string, evs []api.WhyEvaluation) []api.WhyTrigger {
	var out []api.WhyTrigger
	index := map[string]int{}
	if d := n.lookup(service); d != nil {
		next := n.sched.Next(service)
		for i, sp := range d.triggers {
			t := api.WhyTrigger{Name: trigger.Name(i), Kind: sp.Kind, Spec: sp.String()}
			if i < len(next) {
				t.Next = next[i]
			}
			if sp.Kind == trigger.KindEvent {
				t.Waiting = n.eventsWaiting(ctx, service, i, sp.Topic)
			}
			index[t.Name] = len(out)
			out = append(out, t)
		}
	}
	for _, e := range evs {
		i, ok := index[e.Trigger]
		if !ok {
			i = len(out)
			index[e.Trigger] = i
			out = append(out, api.WhyTrigger{Name: e.Trigger, Kind: e.Kind})
		}
		t := &out[i]
		t.Evaluations++
		if t.Results == nil {
			t.Results, t.Outcomes = map[string]int{}, map[string]int{}
		}
		t.Results[e.Result]++
		if e.Result == api.WhyRan {
			t.Outcomes[e.Outcome]++
		}
		if e.Result == api.WhySkipped {
			if t.Skipped == nil {
				t.Skipped = map[string]int{}
			}
			t.Skipped[e.Cause]++
		}
		t.MissedTicks += e.Ticks
	}
	return out
}

// eventsWaiting is how many events trigger i of service has not settled:
// its durable consumer's pending and ack-pending counts; nil when they
// cannot be read.
func (n *Node) eventsWaiting(ctx context.Context, service string, i int, topic string) *uint64 {
	if n.events == nil || n.events.stream == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cons, err := n.events.stream.Consumer(cctx, consumerName(service, i, topic))
	if err != nil {
		return nil
	}
	info, err := cons.Info(cctx)
	if err != nil {
		return nil
	}
	w := info.NumPending + uint64(info.NumAckPending)
	return &w
}
