package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// The tests below run the greeter example on event triggers: given
// {"name": N} it emits {"text": "Hello, N!"} on the topic greetings, and
// without a name it does nothing and says so. So a run's output names the
// event it ran for.

// eventGreeter submits the greeter example as service name, fired by
// events on topic instead of by hand, with at most concurrency runs at
// once.
func eventGreeter(t *testing.T, c *api.Client, name, topic string, concurrency int) {
	t.Helper()
	dir := example(t, "greeter")
	editManifest(t, dir,
		"name: greeter", "name: "+name,
		"  - {kind: manual, input: {name: world}}", "  - {kind: event, topic: "+topic+"}",
		"concurrency: 4", fmt.Sprintf("concurrency: %d", concurrency),
		// These tests are about delivery: a first run slowed past the
		// example's 1 s by a loaded machine (-race beside other packages)
		// would fail and be delivered again, a second run they do not expect.
		"timeout: 1s", "timeout: 10s")
	if _, err := c.Submit(context.Background(), pack(t, dir)); err != nil {
		t.Fatal(err)
	}
}

// allRuns reads every recorded run of service, oldest first.
func allRuns(t *testing.T, c *api.Client, service string) []api.Run {
	t.Helper()
	var all []api.Run
	q := api.RunQuery{Limit: 1000}
	for {
		page, err := c.ListRuns(context.Background(), service, q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Runs...)
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	slices.Reverse(all)
	return all
}

// waitRuns waits until service has recorded at least want runs and
// returns them; the runs happen on the node's consumer goroutines, so
// their records are what the test can wait on.
func waitRuns(t *testing.T, c *api.Client, service string, want int) []api.Run {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		runs := allRuns(t, c, service)
		if len(runs) >= want {
			return runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d runs recorded after 60s, want %d", service, len(runs), want)
		}
		time.Sleep(20 * time.Millisecond) // polling the records, not ordering events
	}
}

// greeted is the name a greeter run greeted, from its emit.
func greeted(t *testing.T, r api.Run) string {
	t.Helper()
	if r.Outcome != "ok" || r.Output == nil || len(r.Output.Emit) != 1 {
		t.Fatalf("run %s: outcome %s, output %+v, error %q; want ok with one emit", r.ID, r.Outcome, r.Output, r.Error)
	}
	var msg struct{ Text string }
	if err := json.Unmarshal(r.Output.Emit[0].Message, &msg); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(strings.TrimPrefix(msg.Text, "Hello, "), "!")
}

// TestEventTrigger: an event published through the API runs the service
// once, with the message as its input and the topic, sequence and
// publisher on its trigger; the run's emit is published in turn. Removing
// the service deletes its durable consumer.
func TestEventTrigger(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	inputs := make(chan contract.Input, 4)
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		inputs <- in
		return invoke()
	})
	eventGreeter(t, n.op, "greeter", "orders.new", 2)
	pub, err := n.op.Publish(ctx, "orders.new", json.RawMessage(`{"name":"Ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	if pub.Topic != "orders.new" || pub.Sequence == 0 {
		t.Fatalf("Publish = %+v, want the topic and a sequence", pub)
	}
	in := <-inputs
	if string(in.Message) != `{"name":"Ada"}` || in.Trigger.Kind != "event" || in.Trigger.Topic != "orders.new" || in.Trigger.Seq != pub.Sequence {
		t.Fatalf("input = message %s, trigger %+v; want the event's message, topic and sequence %d", in.Message, in.Trigger, pub.Sequence)
	}
	runs := waitRuns(t, n.op, "greeter", 1)
	r := runs[0]
	if got := greeted(t, r); got != "Ada" {
		t.Fatalf("greeted %q, want Ada", got)
	}
	if r.Trigger.Kind != "event" || r.Trigger.Name != "triggers[0]" || r.Trigger.Topic != "orders.new" || r.Trigger.Seq != pub.Sequence || r.Trigger.Publisher != "operator" {
		t.Fatalf("run trigger = %+v, want event triggers[0] on orders.new, seq %d, by operator", r.Trigger, pub.Sequence)
	}
	if len(r.Emitted) != 1 || r.Emitted[0].Topic != "greetings" || r.Emitted[0].Sequence <= pub.Sequence || r.Emitted[0].Error != "" {
		t.Fatalf("run emitted = %+v, want greetings published after the event", r.Emitted)
	}
	cons, err := node.EventConsumers(ctx, n.Node, "greeter")
	if err != nil || len(cons) != 1 {
		t.Fatalf("consumers = %v, %v; want one", cons, err)
	}
	if err := n.op.Remove(ctx, "greeter"); err != nil {
		t.Fatal(err)
	}
	if cons, err := node.EventConsumers(ctx, n.Node, "greeter"); err != nil || len(cons) != 0 {
		t.Fatalf("consumers after rm = %v, %v; want none", cons, err)
	}
}

// TestEventBurst: 200 events published at once to a service that runs at
// most 2 at a time, while manual runs of another trigger take its slots
// too, make exactly 200 event runs: none skipped, lost or run twice, and
// never more than 2 at once.
func TestEventBurst(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	var inFlight, most atomic.Int32
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		now := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		return invoke()
	})
	dir := example(t, "greeter")
	editManifest(t, dir,
		"  - {kind: manual, input: {name: world}}", "  - {kind: manual, input: {name: world}}\n  - {kind: event, topic: burst}",
		"concurrency: 4", "concurrency: 2")
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	const events = 200
	var wg sync.WaitGroup
	for i := range 8 { // manual runs competing for the two slots
		wg.Go(func() { n.op.Fire(ctx, "greeter", json.RawMessage(fmt.Sprintf(`{"name":"manual-%d"}`, i))) })
	}
	seqs := map[uint64]string{}
	for i := range events {
		pub, err := n.op.Publish(ctx, "burst", json.RawMessage(fmt.Sprintf(`{"name":"e%d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		seqs[pub.Sequence] = fmt.Sprintf("e%d", i)
	}
	wg.Wait()
	var got []api.Run
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < events {
		got = got[:0]
		for _, r := range allRuns(t, n.op, "greeter") {
			if r.Trigger.Kind == "event" {
				got = append(got, r)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d event runs after 60s, want %d", len(got), events)
		}
		time.Sleep(20 * time.Millisecond) // polling the records
	}
	seen := map[uint64]bool{}
	for _, r := range got {
		if seen[r.Trigger.Seq] {
			t.Errorf("event %d ran twice", r.Trigger.Seq)
		}
		seen[r.Trigger.Seq] = true
		if want := seqs[r.Trigger.Seq]; greeted(t, r) != want {
			t.Errorf("run for event %d greeted %q, want %q", r.Trigger.Seq, greeted(t, r), want)
		}
	}
	if len(got) != events || len(seen) != events {
		t.Fatalf("%d event runs for %d distinct events, want %d of each", len(got), len(seen), events)
	}
	if m := most.Load(); m > 2 {
		t.Fatalf("%d runs at once, want at most resources.concurrency = 2", m)
	}
}

// TestEventsAcrossRestart: events published while the service is busy,
// and still waiting when the node stops, are delivered once the node is
// back on the same data dir; each event runs exactly once across both
// lives.
func TestEventsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var firstLife atomic.Int32
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		firstLife.Add(1)
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return invoke()
	})
	eventGreeter(t, n.op, "greeter", "restart", 1)
	const events = 30
	for i := range events {
		if _, err := n.op.Publish(ctx, "restart", json.RawMessage(fmt.Sprintf(`{"name":"e%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	<-started // the first event is in its run; the others wait in the stream
	close(release)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	ran := int(firstLife.Load())
	if ran >= events {
		t.Fatalf("all %d events ran before the node stopped: nothing was left for the restart", ran)
	}
	t.Logf("%d of %d events ran before the restart", ran, events)

	again := restartWith(t, n.cfg, realWasm(t))
	runs := waitRuns(t, again.op, "greeter", events)
	names := map[string]int{}
	for _, r := range runs {
		names[greeted(t, r)]++
	}
	for i := range events {
		if c := names[fmt.Sprintf("e%d", i)]; c != 1 {
			t.Errorf("event e%d ran %d times, want once", i, c)
		}
	}
	if len(runs) != events {
		t.Fatalf("%d runs, want %d", len(runs), events)
	}
}

// restartWith starts a node on cfg (an earlier node's data dir) with d in
// place of its driver of the same name.
func restartWith(t *testing.T, cfg node.Config, d sandbox.Driver) *testNode {
	t.Helper()
	nd, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	node.ReplaceDriver(nd, d)
	if err := nd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close() })
	tok, err := node.OperatorToken(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{Node: nd, cfg: cfg, op: api.NewClient(nd.Addr(), tok)}
}

// TestPublishRules: a submitter publishes only under its own name; bad
// topics and payloads are refused with the rule they break, and nothing
// of a refused event is stored.
func TestPublishRules(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(n.Addr(), tok.Secret)
	if _, err := alice.Publish(ctx, "alice.orders", json.RawMessage(`1`)); err != nil {
		t.Fatalf("alice in her namespace: %v", err)
	}
	stored, err := node.EventsStored(ctx, n.Node)
	if err != nil {
		t.Fatal(err)
	}
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	for _, tc := range []struct {
		name   string
		c      *api.Client
		topic  string
		body   string
		status int
		msg    string
	}{
		{"another namespace", alice, "orders.new", `1`, 403, "only on topics under alice."},
		{"a prefix of her name", alice, "alicex.orders", `1`, 403, "alice."},
		{"her bare name", alice, "alice", `1`, 403, "alice."},
		{"upper case", n.op, "Orders", `1`, 400, "[a-z0-9_-]"},
		{"wildcard", n.op, "orders.*", `1`, 400, "no wildcards"},
		{"tail wildcard", n.op, "orders.>", `1`, 400, "no wildcards"},
		{"empty token", n.op, "orders..new", `1`, 400, "token 2 is empty"},
		{"trailing dot", n.op, "orders.", `1`, 400, "is empty"},
		{"too long", n.op, strings.Repeat("a", 129), `1`, 400, "at most 128"},
		{"not json", n.op, "orders", `{"a":`, 400, "JSON"},
		{"empty", n.op, "orders", ``, 400, "JSON"},
		{"oversized", n.op, "orders", big, 400, "at most 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Publish(ctx, tc.topic, json.RawMessage(tc.body))
			if status(err) != tc.status || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Publish(%q) = %v, want %d mentioning %q", tc.topic, err, tc.status, tc.msg)
			}
		})
	}
	if after, err := node.EventsStored(ctx, n.Node); err != nil || after != stored {
		t.Fatalf("events stored after refusals = %d, %v; want %d", after, err, stored)
	}
}

// TestEmitTriggersService: a run's emit is published on its topic after
// the run commits and runs the services listening there, which see who
// published it; a submitter's service may emit only in its owner's
// namespace, and the run says why the rest was not published.
func TestEmitTriggersService(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	if _, err := n.op.Submit(ctx, pack(t, example(t, "greeter"))); err != nil {
		t.Fatal(err)
	}
	eventGreeter(t, n.op, "listener", "greetings", 1)
	a, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"Ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Emitted) != 1 || a.Emitted[0].Sequence == 0 {
		t.Fatalf("greeter emitted %+v, want one event published", a.Emitted)
	}
	b := waitRuns(t, n.op, "listener", 1)[0]
	if b.Outcome != "noop" || !strings.Contains(b.Noop, "no name given") {
		t.Fatalf("listener run = %s %q, want noop on the greeting (it has no name)", b.Outcome, b.Noop)
	}
	if b.Trigger.Seq != a.Emitted[0].Sequence || b.Trigger.Publisher != "service:greeter" || b.Trigger.Topic != "greetings" {
		t.Fatalf("listener trigger = %+v, want greetings seq %d by service:greeter", b.Trigger, a.Emitted[0].Sequence)
	}

	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	dir := example(t, "greeter")
	editManifest(t, dir, "name: greeter", "name: alices-greeter")
	if _, err := api.NewClient(n.Addr(), tok.Secret).Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	r, err := n.op.Fire(ctx, "alices-greeter", json.RawMessage(`{"name":"Eve"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != "ok" || len(r.Emitted) != 1 || r.Emitted[0].Sequence != 0 || !strings.Contains(r.Emitted[0].Error, "only on topics under alice.") {
		t.Fatalf("alice's greeter = %s, emitted %+v; want ok with the emit refused for her namespace", r.Outcome, r.Emitted)
	}
}

// TestEventDeadLetter: an event whose runs keep failing is delivered
// events.max_deliver times, then recorded as a dead letter naming the
// deliveries and the last error, and never delivered again.
func TestEventDeadLetter(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv, func(c *node.Config) { c.Events.MaxDeliver = 2 })
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		return sandbox.Exit{Outcome: sandbox.Crashed, Detail: "poisoned by " + string(in.Message)}, nil
	})
	eventGreeter(t, n.op, "greeter", "poison", 1)
	pub, err := n.op.Publish(ctx, "poison", json.RawMessage(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	runs := waitRuns(t, n.op, "greeter", 3)
	for _, r := range runs[:2] {
		if r.Outcome != "crashed" || r.Trigger.Seq != pub.Sequence {
			t.Fatalf("delivery run = %s for event %d, want crashed for event %d", r.Outcome, r.Trigger.Seq, pub.Sequence)
		}
	}
	dead := runs[2]
	for _, want := range []string{"dead letter", fmt.Sprintf("event %d on poison delivered 2 times", pub.Sequence), `last error: crashed`, `poisoned by {"name":"x"}`} {
		if dead.Outcome != "error" || !strings.Contains(dead.Error, want) {
			t.Fatalf("dead letter run = %s %q, want error mentioning %q", dead.Outcome, dead.Error, want)
		}
	}
	if dead.Trigger.Seq != pub.Sequence || dead.Trigger.Topic != "poison" {
		t.Fatalf("dead letter trigger = %+v, want event %d on poison", dead.Trigger, pub.Sequence)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending, unacked, err := node.EventsWaiting(ctx, n.Node, "greeter", 0, "poison")
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 && unacked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the dead letter: %d events pending, %d unacknowledged; want none", pending, unacked)
		}
		time.Sleep(20 * time.Millisecond) // the termination is asynchronous
	}
	if runs := allRuns(t, n.op, "greeter"); len(runs) != 3 {
		t.Fatalf("%d runs, want 2 deliveries and the dead letter", len(runs))
	}
}

// TestEventsAcrossUpgrade: a new version of a service takes over its
// event trigger's durable consumer where the old one stopped, so events
// published before, during and after the upgrade each run exactly once.
func TestEventsAcrossUpgrade(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return invoke()
	})
	eventGreeter(t, n.op, "greeter", "upgrade", 1)
	before, err := node.EventConsumers(ctx, n.Node, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := n.op.Publish(ctx, "upgrade", json.RawMessage(fmt.Sprintf(`{"name":"e%d"}`, i))); err != nil {
				t.Error(err)
			}
		}
	}
	publish(0, 10)
	<-started // v1 is in a run; the other events wait
	dir := example(t, "greeter")
	editManifest(t, dir,
		"version: 1.0.0", "version: 1.1.0",
		"  - {kind: manual, input: {name: world}}", "  - {kind: event, topic: upgrade}",
		"concurrency: 4", "concurrency: 1")
	close(release)
	var wg sync.WaitGroup
	wg.Go(func() { publish(10, 20) })
	if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	publish(20, 30)
	runs := waitRuns(t, n.op, "greeter", 30)
	names := map[string]int{}
	versions := map[string]int{}
	for _, r := range runs {
		names[greeted(t, r)]++
		versions[r.Version]++
	}
	for i := range 30 {
		if c := names[fmt.Sprintf("e%d", i)]; c != 1 {
			t.Errorf("event e%d ran %d times, want once", i, c)
		}
	}
	if len(runs) != 30 || versions["1.1.0"] == 0 {
		t.Fatalf("%d runs by version %v, want 30 with the new version running some", len(runs), versions)
	}
	after, err := node.EventConsumers(ctx, n.Node, "greeter")
	if err != nil || !slices.Equal(before, after) {
		t.Fatalf("consumers %v after the upgrade, %v before (%v); want the same durable consumer", after, before, err)
	}
}

// TestEventTopicTheBusRefuses: a manifest naming a topic no one can publish
// on (upper case) is refused at submit, by the same topic rule as the bus,
// and nothing is registered.
func TestEventTopicTheBusRefuses(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	dir := example(t, "greeter")
	editManifest(t, dir, "  - {kind: manual, input: {name: world}}", "  - {kind: event, topic: Orders.New}")
	_, err := n.op.Submit(ctx, pack(t, dir))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Error(), "triggers[0].topic: tokens are made of [a-z0-9_-]") {
		t.Fatalf("submit = %v; want 400 naming the topic rule", err)
	}
	if _, err := n.op.Service(ctx, "greeter"); err == nil {
		t.Fatal("a refused service is registered")
	}
	if cons, err := node.EventConsumers(ctx, n.Node, "greeter"); err != nil || len(cons) != 0 {
		t.Fatalf("consumers = %v, %v; want none", cons, err)
	}
}

// TestRedeliveredEventRunsOnce: an event whose run was recorded but whose
// ack never reached JetStream (a crash in between) is delivered again and
// acknowledged without running a second time.
func TestRedeliveredEventRunsOnce(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv)
	var invoked atomic.Int32
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		invoked.Add(1)
		return invoke()
	})
	eventGreeter(t, n.op, "greeter", "lost-ack", 1)
	node.NakRecordedEvents(n.Node, 1)
	if _, err := n.op.Publish(ctx, "lost-ack", json.RawMessage(`{"name":"once"}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, unacked, err := node.EventsWaiting(ctx, n.Node, "greeter", 0, "lost-ack")
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 && unacked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events pending, %d unacknowledged after 30s; want the event settled", pending, unacked)
		}
		time.Sleep(20 * time.Millisecond) // polling the consumer's state
	}
	runs := allRuns(t, n.op, "greeter")
	if len(runs) != 1 || invoked.Load() != 1 || greeted(t, runs[0]) != "once" {
		t.Fatalf("%d runs, %d invocations; want the event run once", len(runs), invoked.Load())
	}
}
