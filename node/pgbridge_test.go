package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/internal/pgtest"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestPostgresConfig: events.postgres entries are checked, each error
// naming its entry and field, and no error shows a DSN's password.
func TestPostgresConfig(t *testing.T) {
	good := node.PostgresChannel{DSN: "postgres://u:s3cret@db:5432/app", Channel: "chain_events", Topic: "chain.blocks"}
	for _, tc := range []struct {
		name string
		set  func(*node.PostgresChannel)
		want string // "" when valid
	}{
		{"valid", func(*node.PostgresChannel) {}, ""},
		{"keyword dsn", func(c *node.PostgresChannel) { c.DSN = "host=db user=u password=s3cret dbname=app" }, ""},
		{"quoted channel", func(c *node.PostgresChannel) { c.Channel = `Chain "Events"` }, ""},
		{"no dsn", func(c *node.PostgresChannel) { c.DSN = "" }, "events.postgres[0].dsn: must not be empty"},
		{"bad dsn", func(c *node.PostgresChannel) { c.DSN = "postgres://u:s3cret@db:port/app" }, "events.postgres[0].dsn: cannot be parsed"},
		{"no channel", func(c *node.PostgresChannel) { c.Channel = "" }, "events.postgres[0].channel: must not be empty"},
		{"long channel", func(c *node.PostgresChannel) { c.Channel = strings.Repeat("c", 64) }, "events.postgres[0].channel: a Postgres identifier has at most 63 bytes"},
		{"control in channel", func(c *node.PostgresChannel) { c.Channel = "a\tb" }, "events.postgres[0].channel: must not hold control characters"},
		{"no topic", func(c *node.PostgresChannel) { c.Topic = "" }, "events.postgres[0].topic: must not be empty"},
		{"upper-case topic", func(c *node.PostgresChannel) { c.Topic = "Chain.blocks" }, "events.postgres[0].topic: tokens are made of [a-z0-9_-]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.set(&c)
			cfg := node.DefaultEventsConfig()
			cfg.Postgres = []node.PostgresChannel{c}
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Fatalf("Validate() = %v shows the password", err)
			}
		})
	}
	doc := "events:\n  postgres:\n    - {dsn: 'host=db password=s3cret', channel: Chain, topic: chain.blocks}\n"
	parsed, err := node.ParseConfig([]byte(doc), false)
	if err != nil || len(parsed.Events.Postgres) != 1 || parsed.Events.Postgres[0].Channel != "Chain" || parsed.Events.MaxDeliver != 5 {
		t.Fatalf("ParseConfig(%q) = %+v, %v; want one bridge and the other defaults", doc, parsed.Events, err)
	}
	typo := strings.Replace(doc, "channel:", "chanel:", 1)
	if _, err := node.ParseConfig([]byte(typo), false); err == nil || !strings.Contains(err.Error(), "chanel") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("ParseConfig(%q) = %v; want the unknown key named, no password", typo, err)
	}
	cfg := node.DefaultEventsConfig()
	cfg.Postgres = []node.PostgresChannel{good, good}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "events.postgres[1]: the same dsn, channel and topic as events.postgres[0]") {
		t.Fatalf("Validate() of a duplicate = %v", err)
	}
}

// pgDelivered records, as the service's driver saw the inputs of its
// invocations, which event (bus sequence) carried which notification (the
// payload's n). An event whose run failed (a timeout on a slow machine)
// is delivered and invoked again; a notification published twice would be
// two events.
type pgDelivered struct {
	mu     sync.Mutex
	events map[int]map[uint64]bool // n → the events carrying it
	other  []string
}

func (d *pgDelivered) around(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
	var m struct {
		Channel string `json:"channel"`
		Payload struct {
			N *int `json:"n"`
		} `json:"payload"`
		PID uint32 `json:"pid"`
	}
	err := json.Unmarshal(in.Message, &m)
	d.mu.Lock()
	if err != nil || m.Channel != "chain_events" || m.Payload.N == nil || m.PID == 0 {
		d.other = append(d.other, string(in.Message))
	} else {
		if d.events[*m.Payload.N] == nil {
			d.events[*m.Payload.N] = map[uint64]bool{}
		}
		d.events[*m.Payload.N][in.Trigger.Seq] = true
	}
	d.mu.Unlock()
	return invoke()
}

// readyz reads /readyz.
func readyz(t *testing.T, n *testNode) api.Readiness {
	t.Helper()
	resp, err := http.Get(n.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rd api.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		t.Fatal(err)
	}
	return rd
}

// waitBridge polls /readyz until the bridge's detail satisfies cond.
func waitBridge(t *testing.T, n *testNode, what string, cond func(rd api.Readiness, b api.PostgresBridge) bool) api.Readiness {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rd := readyz(t, n)
		if len(rd.Postgres) != 1 {
			t.Fatalf("/readyz postgres = %+v, want one bridge", rd.Postgres)
		}
		if cond(rd, rd.Postgres[0]) {
			return rd
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s; /readyz: %+v", what, rd)
		}
		time.Sleep(10 * time.Millisecond) // polling the node's view
	}
}

// notifyLoop sends pg_notify('chain_events', '{"n": i}') for i in
// [from, to), one transaction each, from a connection of its own; each
// has committed when it returns.
func notifyLoop(t *testing.T, dsn string, from, to int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for i := from; i < to; i++ {
		if _, err := conn.Exec(ctx, "SELECT pg_notify('chain_events', $1)", fmt.Sprintf(`{"n": %d}`, i)); err != nil {
			t.Fatalf("notify %d: %v", i, err)
		}
	}
}

// TestPostgresNotify: 1,000 NOTIFYs from a real PostgreSQL become exactly
// 1,000 runs of a service with an event trigger on the bridged topic, each
// naming its notification; Postgres restarts between batches lose none it
// delivered, and while the bridge reconnects /readyz shows it reconnecting
// with its error, the node still ready, the password nowhere.
func TestPostgresNotify(t *testing.T) {
	srv := pgtest.Start(t)
	drv := realWasm(t)
	n := startNodeWith(t, drv, func(c *node.Config) {
		c.Events.Postgres = []node.PostgresChannel{{DSN: srv.DSN(), Channel: "chain_events", Topic: "chain.blocks"}}
		c.Runs.PerService = 5000 // every run is counted
	})
	got := &pgDelivered{events: map[int]map[uint64]bool{}}
	drv.setAround(got.around)
	dir := example(t, "greeter")
	editManifest(t, dir, "name: greeter", "name: indexer",
		"  - {kind: manual, input: {name: world}}", "  - {kind: event, topic: chain.blocks}",
		"timeout: 1s", "timeout: 10s") // no retries for a slow first run
	if _, err := n.op.Submit(context.Background(), pack(t, dir)); err != nil {
		t.Fatal(err)
	}
	waitBridge(t, n, "listening", func(_ api.Readiness, b api.PostgresBridge) bool { return b.State == "listening" })

	const first = 1000
	start := time.Now()
	notifyLoop(t, srv.DSN(), 0, first)
	runs := waitRuns(t, n.op, "indexer", first)
	t.Logf("%d notifications to %d recorded runs in %v", first, len(runs), time.Since(start))

	// Batches with restarts between them: after the first, the bridge is
	// seen reconnecting before the server starts again; after the second,
	// the server restarts right away.
	const batch = 100
	next := first
	notifyLoop(t, srv.DSN(), next, next+batch)
	next += batch
	waitBridge(t, n, "the batch received", func(_ api.Readiness, b api.PostgresBridge) bool { return b.Received == uint64(next) })
	srv.Stop()
	rd := waitBridge(t, n, "reconnecting", func(_ api.Readiness, b api.PostgresBridge) bool { return b.State == "reconnecting" })
	b := rd.Postgres[0]
	if !rd.Ready || b.LastError == "" || b.Server != strings.Replace(srv.DSN(), pgtest.Password, "xxxxx", 1) {
		t.Errorf("/readyz while reconnecting = ready %v, %+v; want ready, the error, the server redacted", rd.Ready, b)
	}
	srv.Start()
	waitBridge(t, n, "listening again", func(_ api.Readiness, b api.PostgresBridge) bool { return b.State == "listening" && b.Reconnects == 1 })
	notifyLoop(t, srv.DSN(), next, next+batch)
	next += batch
	srv.Restart()
	rd = waitBridge(t, n, "listening again", func(_ api.Readiness, b api.PostgresBridge) bool { return b.State == "listening" && b.Reconnects == 2 })
	before := rd.Postgres[0].Received // what the old connection got is all in
	notifyLoop(t, srv.DSN(), next, next+batch)
	next += batch

	// Every notification received is published once and runs once; those
	// sent while the bridge listened (all but the batch just before the
	// immediate restart) are all received.
	rd = waitBridge(t, n, "all received published", func(_ api.Readiness, b api.PostgresBridge) bool {
		return b.Received == before+batch && b.Pending == 0 && b.Published == b.Received
	})
	received := int(rd.Postgres[0].Received)
	// One run that did not fail per event; a failed one is retried.
	var done map[uint64]int
	deadline := time.Now().Add(60 * time.Second)
	for {
		done = map[uint64]int{}
		runs := allRuns(t, n.op, "indexer")
		for _, r := range runs {
			if r.Trigger.Kind != "event" || r.Trigger.Topic != "chain.blocks" || r.Trigger.Publisher != "postgres:chain_events" {
				t.Fatalf("run %+v: want an event run on chain.blocks published by postgres:chain_events", r)
			}
			switch r.Outcome {
			case "noop":
				done[r.Trigger.Seq]++
			case "timeout", "error":
				t.Logf("run %s of event %d: %s (delivered again)", r.ID, r.Trigger.Seq, r.Outcome)
			default:
				t.Fatalf("run %+v: want noop", r)
			}
		}
		if len(done) >= received || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the records
	}
	if len(done) != received {
		t.Errorf("%d events ran for %d notifications received", len(done), received)
	}
	for seq, c := range done {
		if c != 1 {
			t.Errorf("event %d ran %d times", seq, c)
		}
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if len(got.other) > 0 {
		t.Errorf("runs for messages of another shape: %q", got.other)
	}
	delivered := 0
	for i := range next {
		c := len(got.events[i])
		switch {
		case c > 1:
			t.Errorf("notification %d published as %d events", i, c)
		case c == 0 && (i < first+batch || i >= first+2*batch):
			t.Errorf("notification %d, sent while the bridge listened, never ran", i)
		}
		delivered += c
	}
	if delivered != received {
		t.Errorf("%d notifications ran, %d received", delivered, received)
	}
	t.Logf("%d sent, %d received and run once each; %d of the batch sent just before a restart", next, received, received-(next-batch))

	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	server := strings.Replace(srv.DSN(), pgtest.Password, "xxxxx", 1)
	labels := fmt.Sprintf(`{channel="chain_events",server="%s",topic="chain.blocks"}`, server)
	for _, want := range []string{
		"andromeda_pg_bridge_connected" + labels + " 1",
		fmt.Sprintf("andromeda_pg_bridge_notifications_total%s %d", labels, received),
		"andromeda_pg_bridge_reconnects_total" + labels + " 2",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), pgtest.Password) {
		t.Error("/metrics shows the password")
	}
}
