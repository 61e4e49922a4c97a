package node_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestWhy: the why question lists every evaluation of a service with what
// became of it: a run that ran, one skipped over the concurrency bound,
// one rejected for an undeclared action kind, an event whose run crashed
// and its dead letter; and sums them up per trigger, to its owner and the
// operator only.
func TestWhy(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv, func(c *node.Config) { c.Events.MaxDeliver = 1 })
	started, release := make(chan struct{}, 1), make(chan struct{})
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		msg := string(in.Message)
		switch {
		case strings.Contains(msg, "block"):
			started <- struct{}{}
			<-release
		case strings.Contains(msg, "reject"):
			return sandbox.Exit{Outcome: sandbox.OK, Output: []byte(`{"actions":[{"kind":"submit","params":{"amount":1}}]}`)}, nil
		case strings.Contains(msg, "poison"):
			return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "poisoned"}, nil
		}
		return invoke()
	})
	dir := example(t, "greeter")
	editManifest(t, dir,
		"  - {kind: manual, input: {name: world}}", "  - {kind: manual, input: {name: world}}\n  - {kind: event, topic: why}",
		"concurrency: 4", "concurrency: 1")
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	fire := func(name string) (api.Run, error) {
		return n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"`+name+`"}`))
	}
	ok, err := fire("Ada")
	if err != nil || ok.Outcome != "ok" {
		t.Fatalf("fire = %+v, %v", ok, err)
	}
	blocked := make(chan api.Run, 1)
	go func() {
		r, _ := fire("block")
		blocked <- r
	}()
	<-started
	busy, err := fire("busy")
	if err == nil || busy.Outcome != "" && busy.Outcome != "skipped" {
		t.Fatalf("fire over the bound = %+v, %v; want skipped", busy, err)
	}
	close(release)
	<-blocked
	rej, err := fire("reject")
	if err != nil || rej.Outcome != "rejected" {
		t.Fatalf("fire with an undeclared kind = %+v, %v; want rejected", rej, err)
	}
	if _, err := n.op.Publish(ctx, "why", json.RawMessage(`{"name":"poison"}`)); err != nil {
		t.Fatal(err)
	}
	var why api.Why
	deadline := time.Now().Add(30 * time.Second)
	for {
		if why, err = n.op.Why(ctx, "greeter", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if len(why.Evaluations) == 6 && why.Triggers[1].Waiting != nil && *why.Triggers[1].Waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("why = %+v; want 6 evaluations and no event waiting", why)
		}
		time.Sleep(50 * time.Millisecond) // the dead letter is recorded asynchronously
	}
	count := map[string]int{}
	for i, e := range why.Evaluations {
		if i > 0 && e.At.After(why.Evaluations[i-1].At) {
			t.Errorf("evaluations not newest first: %v after %v", e.At, why.Evaluations[i-1].At)
		}
		key := e.Result + "/" + e.Outcome + "/" + e.Cause
		count[key]++
		if e.RunID == "" {
			t.Errorf("evaluation %+v has no run id", e)
		}
		switch e.Result {
		case api.WhyRejected:
			if e.RunID != rej.ID || !strings.Contains(e.Reason, "submit") {
				t.Errorf("rejected evaluation %+v; want run %s naming the kind", e, rej.ID)
			}
		case api.WhyDeadLetter, api.WhySkipped:
			if e.Reason == "" {
				t.Errorf("%s evaluation without a reason: %+v", e.Result, e)
			}
		}
	}
	want := map[string]int{
		"ran/ok/": 2, "skipped/skipped/concurrency": 1, "rejected/rejected/": 1,
		"ran/crashed/": 1, "dead_letter/error/": 1,
	}
	for k, v := range want {
		if count[k] != v {
			t.Errorf("%d evaluations %s, want %d (all: %v)", count[k], k, v, count)
		}
	}
	if len(why.Triggers) != 2 {
		t.Fatalf("triggers = %+v", why.Triggers)
	}
	manual, event := why.Triggers[0], why.Triggers[1]
	if manual.Name != "triggers[0]" || manual.Evaluations != 4 || manual.Results["ran"] != 2 || manual.Skipped["concurrency"] != 1 || manual.Results["rejected"] != 1 {
		t.Errorf("manual trigger summary = %+v", manual)
	}
	if event.Spec != "event why" || event.Evaluations != 2 || event.Results["dead_letter"] != 1 || event.Outcomes["crashed"] != 1 {
		t.Errorf("event trigger summary = %+v", event)
	}
	if len(why.Notes) == 0 || !strings.Contains(strings.Join(why.Notes, " "), "deduplicated") {
		t.Errorf("notes = %q; want what is not recorded (deduplicated) said", why.Notes)
	}

	// The window: nothing since a moment ago.
	if w, err := n.op.Why(ctx, "greeter", time.Now().Add(-time.Millisecond)); err != nil || len(w.Evaluations) != 0 {
		t.Errorf("why since now = %d evaluations, %v; want none", len(w.Evaluations), err)
	}
	// Another submitter does not see the service; an unknown one is 404.
	tok, err := n.op.CreateToken(ctx, "mallory", "submitter")
	if err != nil {
		t.Fatal(err)
	}
	other := api.NewClient(n.Addr(), tok.Secret)
	if _, err := other.Why(ctx, "greeter", time.Time{}); status(err) != 404 {
		t.Errorf("why as another submitter = %v; want 404", err)
	}
	if _, err := n.op.Why(ctx, "nosuch", time.Time{}); status(err) != 404 {
		t.Errorf("why of an unknown service = %v; want 404", err)
	}
}

// TestWhyCron: a cron trigger's summary has its next due tick, and its
// ticks are evaluations of it.
func TestWhyCron(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	if _, err := n.op.Submit(ctx, pack(t, heartbeatEvery(t, ""))); err != nil {
		t.Fatal(err)
	}
	waitRunsUntil(t, n.op, "heartbeat", func(rs []api.Run) bool { return len(rs) >= 2 })
	why, err := n.op.Why(ctx, "heartbeat", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cron := why.Triggers[0]
	if cron.Spec != "every 1s" || cron.Evaluations < 2 || cron.Results["ran"] != cron.Evaluations || cron.Next.IsZero() || !cron.Next.After(why.Evaluations[0].At) {
		t.Errorf("cron trigger summary = %+v (newest evaluation at %v)", cron, why.Evaluations[0].At)
	}
}
