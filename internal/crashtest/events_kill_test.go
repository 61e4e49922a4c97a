//go:build linux

package crashtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// burstService is TestEventBurstKill's service: examples/greeter, a wasm
// reactor, on an event trigger; given {"name": "e<i>"} it emits "Hello,
// e<i>!", so each ok run names the event index it ran for.
const (
	burstService = "burst"
	burstTopic   = "burst.orders"
)

// TestEventBurstKill is issue 9's must-hold "10,000 events published in a
// burst far above the consumer's concurrency, with a SIGKILL of the node in
// the middle and a restart: each runs exactly once" (2,000 unless
// ANDROMEDA_SOAK=1). It runs `andromeda serve` as a subprocess with the
// greeter on an event trigger (resources.concurrency 4), publishes the
// events through POST /v1/events/{topic} from several goroutines as fast
// as the node takes them, SIGKILLs the node once about half are
// acknowledged and restarts it on the same data dir while the publishers
// wait, then publishes the rest. Once every acknowledged event has a run
// and the service's durable consumer has nothing pending or unacknowledged,
// it reads every run through the runs API and checks: each acknowledged
// event ran exactly once, ok, for its own sequence; no event (acknowledged
// or not) ran twice; nothing was dead-lettered.
func TestEventBurstKill(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build andromeda and the wasm service")
	events := 2_000
	if os.Getenv("ANDROMEDA_SOAK") == "1" {
		events = 10_000
	}
	ctx := context.Background()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "andromeda")
	if out, err := exec.Command("go", "build", "-o", bin, andromedaCmd).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	svcDir := filepath.Join(tmp, burstService)
	testutil.CopyDir(t, filepath.Join("..", "..", "examples", "greeter"), svcDir)
	if err := gobuild.Wasm(ctx, filepath.Join("..", "..", "examples", "greeter"), filepath.Join(svcDir, "main.wasm"), gobuild.Reactor); err != nil {
		t.Fatalf("build the wasm service: %v", err)
	}
	burstManifest(t, filepath.Join(svcDir, "andromeda.yaml"))

	data := filepath.Join(tmp, "data")
	n := &killNode{t: t, bin: bin, logPath: filepath.Join(tmp, "node.log"), config: filepath.Join(tmp, "andromeda.yaml")}
	n.addr = testutil.FreeAddr(t)
	// Every run is kept.
	cfg := fmt.Sprintf("listen: %s\ndata: %s\nruns: {per_service: %d}\nlog: {format: json, level: info}\n",
		n.addr, data, 10*events)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanup)
	if _, err := n.start(); err != nil {
		t.Fatalf("first start: %v", err)
	}
	token, err := node.OperatorToken(data)
	if err != nil {
		t.Fatal(err)
	}
	c := burstClient(n.addr, token)
	b, err := archive.Pack(svcDir)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Submit(ctx, b); err != nil || res.Service.Status != "deployed" {
		t.Fatalf("submit: %v (status %q: %s)", err, res.Service.Status, res.Service.StatusDetail)
	}

	// Publish from 8 goroutines; the kill comes once half the events are
	// acknowledged, and a publisher whose call fails waits for the node to
	// be back, then goes on with the next event.
	p := newBurstPublish(events)
	killAt := make(chan struct{})
	begin := time.Now()
	var pubs sync.WaitGroup
	for range 8 {
		pubs.Go(func() { p.run(burstClient(n.addr, token), killAt) })
	}
	<-killAt
	killed := time.Now()
	ackedBeforeKill := p.ackedCount()
	p.down()
	n.kill()
	took, err := n.start()
	if err != nil {
		t.Fatalf("restart after the kill: %v", err)
	}
	restarted := time.Now()
	p.up()
	pubs.Wait()
	published := time.Now()

	acked, unknown, refused := p.result()
	t.Logf("events %d: %d acknowledged (%d before the kill), %d not acknowledged %v; node ready %v after the kill",
		events, len(acked), ackedBeforeKill, len(unknown), refused, took.Round(time.Millisecond))
	if len(acked) < events/2 {
		t.Fatalf("only %d of %d events acknowledged: the test exercised too little", len(acked), events)
	}

	// Wait until every acknowledged event has a run and the consumer has
	// nothing left to deliver, so a late duplicate would be seen.
	deadline := 90 * time.Second
	if events > 2_000 {
		deadline = 5 * time.Minute
	}
	// The consumer's state is read offline, from the data dir of the node
	// stopped gracefully; while it has events to deliver again (a delivery
	// whose ack the kill lost comes back after the ack wait), the node runs
	// on.
	var runs []api.Run
	until := time.Now().Add(deadline)
	for round := 1; ; round++ {
		runs = waitBurstRan(t, c, acked, until)
		if err := n.stop(30 * time.Second); err != nil {
			t.Fatalf("graceful stop: %v", err)
		}
		pending, unacked := burstConsumer(t, data)
		if _, err := n.start(); err != nil {
			t.Fatalf("start after the check: %v", err)
		}
		c = burstClient(n.addr, token)
		if pending == 0 && unacked == 0 {
			break
		}
		if time.Now().After(until) {
			t.Fatalf("after %v: the consumer still has %d events pending, %d unacknowledged", deadline, pending, unacked)
		}
		t.Logf("check %d: every acknowledged event ran, but the consumer has %d events pending, %d unacknowledged: waiting", round, pending, unacked)
		time.Sleep(2 * time.Second) // polling the consumer's state; JetStream redelivers after the ack wait
	}
	runs = listAllRuns(t, c, burstService) // runs of the checks' restarts too
	drained := time.Now()

	// Each acknowledged event ran exactly once, ok, for its sequence; no
	// event ran twice.
	byIndex := map[int][]api.Run{}
	bySeq := map[uint64][]string{}
	var lifeOne, lifeTwo []time.Time
	for _, r := range runs {
		if r.Trigger.Kind != "event" {
			t.Errorf("run %s: trigger %+v, want an event", r.ID, r.Trigger)
			continue
		}
		bySeq[r.Trigger.Seq] = append(bySeq[r.Trigger.Seq], r.ID)
		i, ok := burstIndex(r)
		if !ok {
			t.Errorf("run %s of event %d: outcome %s (%s%s), want ok naming the event's index", r.ID, r.Trigger.Seq, r.Outcome, r.Error, r.Noop)
			continue
		}
		byIndex[i] = append(byIndex[i], r)
		if r.Start.Before(killed) {
			lifeOne = append(lifeOne, r.Start)
		} else {
			lifeTwo = append(lifeTwo, r.Start)
		}
	}
	for seq, ids := range bySeq {
		if len(ids) > 1 {
			t.Errorf("event %d ran %d times: runs %v", seq, len(ids), ids)
		}
	}
	var lost []int
	for i, seq := range acked {
		rs := byIndex[i]
		switch {
		case len(rs) == 0:
			lost = append(lost, i)
		case len(rs) > 1:
			t.Errorf("acknowledged event e%d (seq %d) ran %d times", i, seq, len(rs))
		case rs[0].Trigger.Seq != seq:
			t.Errorf("acknowledged event e%d was stored as %d, but its run names event %d", i, seq, rs[0].Trigger.Seq)
		}
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		t.Errorf("%d acknowledged events never ran: e%v", len(lost), firstInts(lost, 20))
	}
	ranUnknown := 0
	for i := range unknown {
		switch rs := byIndex[i]; len(rs) {
		case 0:
		case 1:
			ranUnknown++
		default:
			t.Errorf("unacknowledged event e%d ran %d times", i, len(rs))
		}
	}
	for i := range byIndex {
		if _, ok := acked[i]; !ok && !unknown[i] {
			t.Errorf("a run names e%d, which was never published", i)
		}
	}

	rate := func(k int, d time.Duration) string {
		return fmt.Sprintf("%d in %v (%.0f/s)", k, d.Round(time.Millisecond), float64(k)/d.Seconds())
	}
	t.Logf("publish: %s before the kill; %s after the restart", rate(ackedBeforeKill, killed.Sub(begin)), rate(len(acked)-ackedBeforeKill, published.Sub(restarted)))
	t.Logf("runs: %d (%d of events not acknowledged); drain: %s before the kill, %s after the restart (99%% of the runs of each life, by their start times); settled %v after the restart",
		len(runs), ranUnknown, rate(len(lifeOne)*99/100, spanSince(begin, lifeOne)), rate(len(lifeTwo)*99/100, spanSince(restarted, lifeTwo)), drained.Sub(restarted).Round(time.Millisecond))
	t.Logf("events delivered again that had run, acknowledged without running again: %d (%d found by the restart's look at the runs above the ack floor)",
		n.logCount("redelivered event already ran")+n.logCount("event ran before the restart"), n.logCount("event ran before the restart"))
}

// burstManifest turns the greeter's manifest into the burst service's: its
// name, an event trigger instead of the manual one, concurrency 4.
func burstManifest(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := string(b)
	for _, r := range [][2]string{
		{"name: greeter", "name: " + burstService},
		{"  - {kind: manual, input: {name: world}}", "  - {kind: event, topic: " + burstTopic + "}"},
		{"concurrency: 4", "concurrency: 4"},
	} {
		if !strings.Contains(m, r[0]) {
			t.Fatalf("%s has no %q to replace", path, r[0])
		}
		m = strings.Replace(m, r[0], r[1], 1)
	}
	if err := os.WriteFile(path, []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
}

// burstClient is an API client with enough idle connections for the
// publishers, so a burst does not open a connection per call.
func burstClient(addr, token string) *api.Client {
	c := api.NewClient(addr, token)
	c.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	return c
}

// burstPublish hands out event indices to publishers and keeps what
// became of each: acknowledged (202, with the event's sequence) or not.
type burstPublish struct {
	events int
	next   atomic.Int64
	half   sync.Once

	mu      sync.Mutex
	acked   map[int]uint64 // index → sequence
	unknown map[int]bool   // published without an answer, or refused
	refused map[string]int // by HTTP status or "no answer"
	back    chan struct{}  // closed when the node is up; replaced while it is down
}

func newBurstPublish(events int) *burstPublish {
	p := &burstPublish{events: events, acked: map[int]uint64{}, unknown: map[int]bool{}, refused: map[string]int{}, back: make(chan struct{})}
	close(p.back)
	return p
}

// run publishes events until none are left; it closes killAt once half
// of them are acknowledged.
func (p *burstPublish) run(c *api.Client, killAt chan struct{}) {
	for {
		i := int(p.next.Add(1) - 1)
		if i >= p.events {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		pub, err := c.Publish(ctx, burstTopic, json.RawMessage(fmt.Sprintf(`{"name":"e%d"}`, i)))
		cancel()
		p.mu.Lock()
		if err == nil && pub.Sequence > 0 {
			p.acked[i] = pub.Sequence
			if len(p.acked) == p.events/2 {
				p.half.Do(func() { close(killAt) })
			}
			p.mu.Unlock()
			continue
		}
		p.unknown[i] = true
		var ae *api.Error
		if errors.As(err, &ae) {
			p.refused[strconv.Itoa(ae.Status)]++
		} else {
			p.refused["no answer"]++
		}
		back := p.back
		p.mu.Unlock()
		<-back // the node is down: wait for the restart
	}
}

// down marks the node down: publishers that fail wait until up.
func (p *burstPublish) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.back = make(chan struct{})
}

func (p *burstPublish) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.back)
}

func (p *burstPublish) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

func (p *burstPublish) result() (acked map[int]uint64, unknown map[int]bool, refused map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked, p.unknown, p.refused
}

// waitBurstRan waits until every acknowledged event has a run, and
// returns every run of the service.
func waitBurstRan(t *testing.T, c *api.Client, acked map[int]uint64, deadline time.Time) []api.Run {
	t.Helper()
	for {
		runs := listAllRuns(t, c, burstService)
		ran := map[int]bool{}
		for _, r := range runs {
			if i, ok := burstIndex(r); ok {
				ran[i] = true
			}
		}
		missing := 0
		for i := range acked {
			if !ran[i] {
				missing++
			}
		}
		if missing == 0 {
			return runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged events without a run", missing)
		}
		time.Sleep(250 * time.Millisecond) // polling the records
	}
}

// burstConsumer is, read offline from a stopped node's data dir, how many
// events the burst service's one durable consumer has yet to deliver, and
// how many it delivered without an ack or a termination.
func burstConsumer(t *testing.T, data string) (pending uint64, unacked int) {
	t.Helper()
	ctx := context.Background()
	b, done := openOffline(t, data)
	defer done()
	s, err := b.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	lister := s.ConsumerNames(ctx)
	for name := range lister.Name() {
		if strings.HasPrefix(name, bus.ConsumerEventsPrefix+burstService+"_") {
			names = append(names, name)
		}
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 {
		t.Fatalf("consumers of %s: %v, want one", burstService, names)
	}
	cons, err := s.Consumer(ctx, names[0])
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending, info.NumAckPending
}

// listAllRuns reads every run of service through the runs API, newest
// first.
func listAllRuns(t *testing.T, c *api.Client, service string) []api.Run {
	t.Helper()
	var all []api.Run
	q := api.RunQuery{Limit: 1000}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		page, err := c.ListRuns(ctx, service, q)
		cancel()
		if err != nil {
			t.Fatalf("list runs of %s: %v", service, err)
		}
		all = append(all, page.Runs...)
		if page.Next == "" {
			return all
		}
		q.Cursor = page.Next
	}
}

// burstIndex is the event index an ok burst run greeted.
func burstIndex(r api.Run) (int, bool) {
	if r.Outcome != "ok" || r.Output == nil || len(r.Output.Emit) != 1 {
		return 0, false
	}
	var msg struct{ Text string }
	if json.Unmarshal(r.Output.Emit[0].Message, &msg) != nil {
		return 0, false
	}
	s, ok := strings.CutPrefix(msg.Text, "Hello, e")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(strings.TrimSuffix(s, "!"))
	return i, err == nil
}

// spanSince is from begin to when 99% of ts had passed, so that an event
// delivered again after the ack wait does not hide the rate; at least a
// millisecond.
func spanSince(begin time.Time, ts []time.Time) time.Duration {
	if len(ts) == 0 {
		return time.Millisecond
	}
	ts = slices.Clone(ts)
	slices.SortFunc(ts, time.Time.Compare)
	return max(time.Millisecond, ts[(len(ts)-1)*99/100].Sub(begin))
}

// logCount is how many lines of the node's log contain s.
func (n *killNode) logCount(s string) int {
	b, _ := os.ReadFile(n.logPath)
	return strings.Count(string(b), s)
}
