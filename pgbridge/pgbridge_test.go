package pgbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/andromeda-runner/andromeda/internal/pgtest"
)

func TestNewMessage(t *testing.T) {
	for _, tc := range []struct {
		name, payload, want string
	}{
		{"object", `{"block": 12, "hash": "0xab"}`, `{"channel":"ch","payload":{"block":12,"hash":"0xab"},"pid":7}`},
		{"number", `42`, `{"channel":"ch","payload":42,"pid":7}`},
		{"json string", `"quoted"`, `{"channel":"ch","payload":"quoted","pid":7}`},
		{"not json", `block 12 "done"`, `{"channel":"ch","payload":"block 12 \"done\"","pid":7}`},
		{"truncated json", `{"a":`, `{"channel":"ch","payload":"{\"a\":","pid":7}`},
		{"empty", ``, `{"channel":"ch","payload":"","pid":7}`},
		{"blank", `  `, `{"channel":"ch","payload":"  ","pid":7}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(NewMessage("ch", tc.payload, 7)); got != tc.want {
				t.Errorf("NewMessage(%q) = %s, want %s", tc.payload, got, tc.want)
			}
		})
	}
}

func TestQuoteIdentifier(t *testing.T) {
	for in, want := range map[string]string{
		"orders":          `"orders"`,
		"Orders":          `"Orders"`,
		`say "hi"; DROP`:  `"say ""hi""; DROP"`,
		"dotted.name x-1": `"dotted.name x-1"`,
	} {
		if got := QuoteIdentifier(in); got != want {
			t.Errorf("QuoteIdentifier(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCheckChannel(t *testing.T) {
	for _, tc := range []struct {
		name, channel, err string
	}{
		{"plain", "orders", ""},
		{"odd but quoted", `Ab "c".d e`, ""},
		{"63 bytes", strings.Repeat("a", 63), ""},
		{"empty", "", "must not be empty"},
		{"64 bytes", strings.Repeat("a", 64), "at most 63 bytes, got 64"},
		{"control", "a\nb", "control characters"},
		{"nul", "a\x00b", "control characters"},
		{"not utf-8", "a\xffb", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckChannel(tc.channel)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("CheckChannel(%q) = %v, want %q", tc.channel, err, tc.err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:s3cret@db:5432/app?sslmode=disable", "postgres://u:xxxxx@db:5432/app?sslmode=disable"},
		{"postgresql://u@db/app", "postgresql://u@db/app"},
		{"postgres://db/app?password=s3cret&sslmode=disable", "postgres://db/app?password=xxxxx&sslmode=disable"},
		{"postgres://u:s3cret@h1:5432,h2:5432/app", "postgres://u:xxxxx@h1:5432,h2:5432/app"},
		{"host=db user=u password=s3cret dbname=app", "host=db user=u password=xxxxx dbname=app"},
		{"host=db password = 's3 cr\\'et' dbname=app", "host=db password = xxxxx dbname=app"},
		{"host=db sslpassword=s3cret", "host=db sslpassword=xxxxx"},
		{"host=db PASSWORD=s3cret", "host=db PASSWORD=xxxxx"},
	} {
		got := Redact(tc.in)
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "s3") {
			t.Errorf("Redact(%q) = %q keeps the password", tc.in, got)
		}
	}
}

func TestNewChecks(t *testing.T) {
	_, err := New([]Channel{
		{DSN: "postgres://u:s3cret@db/app", Channel: "ok", Topic: "t"},
		{DSN: "postgres://u:s3cret@db:notaport/app", Channel: "", Topic: ""},
		{DSN: "", Channel: "ok", Topic: "t"},
	}, nil, nil)
	if err == nil {
		t.Fatal("New accepted a bad port, an empty channel, topic and DSN")
	}
	for _, want := range []string{"channel 1: dsn: cannot be parsed", "channel 1: channel: must not be empty", "channel 1: topic: must not be empty", "channel 2: dsn: must not be empty"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New: %v; want %q in it", err, want)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("New: %v shows the password", err)
	}
}

// published collects what a bridge published, by message id.
type published struct {
	mu     sync.Mutex
	ids    map[string]int // accepted publishes per id
	msgs   []Message      // accepted, in order
	topics map[string]bool
	// fail, when set, answers each attempt; nil accepts.
	fail func(id string, message json.RawMessage) error
}

func newPublished() *published {
	return &published{ids: map[string]int{}, topics: map[string]bool{}}
}

func (p *published) publish(ctx context.Context, topic string, message json.RawMessage, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		if err := p.fail(id, message); err != nil {
			return err
		}
	}
	var m Message
	if err := json.Unmarshal(message, &m); err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	p.ids[id]++
	if p.ids[id] == 1 {
		p.msgs = append(p.msgs, m)
	}
	p.topics[topic] = true
	return nil
}

func (p *published) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// check fails t unless exactly the payloads want were published, each
// under one id, once.
func (p *published) check(t *testing.T, want []string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range p.ids {
		if n != 1 {
			t.Errorf("id %s published %d times", id, n)
		}
	}
	got := map[string]int{}
	for _, m := range p.msgs {
		var s string
		if err := json.Unmarshal(m.Payload, &s); err != nil {
			s = string(m.Payload)
		}
		got[s]++
		if m.PID == 0 {
			t.Errorf("message %+v has no pid", m)
		}
	}
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("payload %s published %d times, want once", w, got[w])
		}
		delete(got, w)
	}
	for s, n := range got {
		t.Errorf("payload %s published %d times, want none", s, n)
	}
}

// start makes a bridge with fast backoff and starts it; the test closes it.
func start(t *testing.T, chs []Channel, p *published, log *slog.Logger) *Bridge {
	t.Helper()
	b, err := New(chs, p.publish, log)
	if err != nil {
		t.Fatal(err)
	}
	b.minBackoff, b.maxBackoff = 5*time.Millisecond, 100*time.Millisecond
	// Probe often, so notifications also arrive while a probe is under way.
	b.probeIdle = 20 * time.Millisecond
	b.Start()
	t.Cleanup(func() { b.Close() })
	return b
}

// waitFor polls cond (the bridge works on goroutines of its own, seen
// through Status) until it holds, for at most 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func state(b *Bridge, i int) Status { return b.Status()[i] }

// notify sends payloads on channel in one transaction, from a connection
// of its own. Postgres folds identical payloads of one transaction into
// one notification, so tests send distinct ones.
func notify(t *testing.T, dsn, channel string, payloads ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", channel, payloads); err != nil {
		t.Fatal(err)
	}
}

// TestBridge: notifications on two channels of one server, one with a
// name that needs quoting, arrive as messages on their topics, payloads
// parsed as JSON when they are JSON, each published once under an id of
// its own.
func TestBridge(t *testing.T) {
	srv := pgtest.Start(t)
	odd := `Odd "name"; x.y`
	pub := newPublished()
	b := start(t, []Channel{
		{DSN: srv.DSN(), Channel: "orders", Topic: "orders.new"},
		{DSN: srv.KeywordDSN(), Channel: odd, Topic: "odd"},
	}, pub, nil)
	waitFor(t, "both listening", func() bool { return state(b, 0).State == Listening && state(b, 1).State == Listening })
	var want []string
	var payloads []string
	for i := range 100 {
		payloads = append(payloads, fmt.Sprintf(`{"n":%d}`, i))
		want = append(want, fmt.Sprintf(`{"n":%d}`, i))
	}
	payloads = append(payloads, "plain text", "")
	want = append(want, "plain text", "")
	notify(t, srv.DSN(), "orders", payloads...)
	notify(t, srv.DSN(), "ORDERS", "not ours: another channel")
	notify(t, srv.DSN(), odd, "odd one")
	want = append(want, "odd one")
	waitFor(t, "103 published", func() bool { return pub.count() >= 103 })
	pub.check(t, want)
	if !pub.topics["orders.new"] || !pub.topics["odd"] || len(pub.topics) != 2 {
		t.Errorf("topics = %v, want orders.new and odd", pub.topics)
	}
	st := b.Status()
	if st[0].Received != 102 || st[0].Published != 102 || st[1].Received != 1 || st[1].Published != 1 || st[0].Pending != 0 {
		t.Errorf("status = %+v, want 102 and 1 received and published", st)
	}
	if st[0].Reconnects != 0 || st[0].LastError != "" || st[0].State != Listening {
		t.Errorf("status = %+v, want listening all along (probed every 20 ms)", st[0])
	}
	for _, s := range st {
		if strings.Contains(s.Server, pgtest.Password) || !strings.Contains(s.Server, "xxxxx") {
			t.Errorf("status server %q: want the password redacted", s.Server)
		}
	}
	b.Close()
	if st := state(b, 0); st.State != Stopped {
		t.Errorf("after Close state = %s, want stopped", st.State)
	}
}

// TestReconnect: a bridge started before its server is connecting, then
// reconnecting with the error, listening once the server is up; a server
// restart and a terminated backend make it reconnect, each state change
// logged once whatever the number of attempts, and what is notified while
// it listens again arrives. The password appears in no log line, status
// or error.
func TestReconnect(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Stop()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	pub := newPublished()
	b := start(t, []Channel{{DSN: srv.DSN(), Channel: "jobs", Topic: "jobs"}}, pub, log)
	if s := state(b, 0); s.State != Connecting && s.State != Reconnecting {
		t.Fatalf("state before the server is up = %s", s.State)
	}
	waitFor(t, "reconnecting", func() bool { return state(b, 0).State == Reconnecting })
	// Let it try many times against the stopped server (backoff 5 ms to
	// 100 ms): each attempt fails with the same error.
	time.Sleep(500 * time.Millisecond) // attempts happen in time; nothing to wait on
	if s := state(b, 0); !strings.Contains(s.LastError, "connect") || s.Reconnects != 0 {
		t.Errorf("status while down = %+v, want a connect error and no reconnects", s)
	}
	if n := strings.Count(logs.String(), "postgres bridge reconnecting"); n != 1 {
		t.Errorf("logged reconnecting %d times during repeated attempts, want once:\n%s", n, logs.String())
	}
	srv.Start()
	waitFor(t, "listening", func() bool { return state(b, 0).State == Listening })
	notify(t, srv.DSN(), "jobs", "a")
	waitFor(t, "a published", func() bool { return pub.count() == 1 })

	srv.Restart()
	waitFor(t, "listening again after a restart", func() bool { s := state(b, 0); return s.State == Listening && s.Reconnects == 1 })
	notify(t, srv.DSN(), "jobs", "b")
	waitFor(t, "b published", func() bool { return pub.count() == 2 })

	// A backend terminated by an administrator.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var killed int
	if err := conn.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'andromeda-pgbridge'").Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminate the bridge's backend: %d, %v", killed, err)
	}
	waitFor(t, "listening after its backend was terminated", func() bool { s := state(b, 0); return s.State == Listening && s.Reconnects == 2 })
	notify(t, srv.DSN(), "jobs", "c")
	waitFor(t, "c published", func() bool { return pub.count() == 3 })
	pub.check(t, []string{"a", "b", "c"})
	if s := state(b, 0); !strings.Contains(s.LastError, "terminat") {
		t.Errorf("last error = %q, want the termination", s.LastError)
	}

	// A wrong password: the server's answer, never the password.
	bad := strings.Replace(srv.DSN(), pgtest.Password, "wrong-"+pgtest.Password, 1)
	b2 := start(t, []Channel{{DSN: bad, Channel: "jobs", Topic: "jobs"}}, newPublished(), log)
	waitFor(t, "reconnecting with a wrong password", func() bool { return state(b2, 0).LastError != "" })
	if s := state(b2, 0); !strings.Contains(s.LastError, "password authentication failed") {
		t.Errorf("last error with a wrong password = %q", s.LastError)
	}
	b2.Close()
	b.Close()
	for _, s := range append(b.Status(), b2.Status()...) {
		if b, _ := json.Marshal(s); strings.Contains(string(b), pgtest.Password) {
			t.Errorf("status shows the password: %s", b)
		}
	}
	if strings.Contains(logs.String(), pgtest.Password) {
		t.Errorf("the log shows the password:\n%s", logs.String())
	}
	for _, want := range []string{"postgres bridge listening", "reconnects=2", `server="postgres://postgres:xxxxx@`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// TestPublishFails: while the publish function fails, notifications wait
// in the bridge, retried under the same id, and none is dropped or
// published twice once it accepts again; one it refuses for good is
// counted and skipped.
func TestPublishFails(t *testing.T) {
	srv := pgtest.Start(t)
	pub := newPublished()
	down := true
	attempts := map[string]int{}
	pub.fail = func(id string, _ json.RawMessage) error {
		attempts[id]++
		if down {
			return errors.New("bus unavailable")
		}
		return nil
	}
	b := start(t, []Channel{{DSN: srv.DSN(), Channel: "jobs", Topic: "jobs"}}, pub, nil)
	waitFor(t, "listening", func() bool { return state(b, 0).State == Listening })
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprint(i))
	}
	notify(t, srv.DSN(), "jobs", want...)
	waitFor(t, "50 received, the first retried", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return state(b, 0).Received == 50 && len(attempts) == 1 && maxOf(attempts) >= 3
	})
	if s := state(b, 0); s.Pending != 50 || s.Published != 0 || !strings.Contains(s.PublishError, "bus unavailable") {
		t.Errorf("status while publishing fails = %+v, want 50 pending, the error", s)
	}
	pub.mu.Lock()
	down = false
	pub.mu.Unlock()
	waitFor(t, "50 published", func() bool { return pub.count() == 50 })
	pub.check(t, want)
	if s := state(b, 0); s.PublishError != "" || s.Published != 50 || s.Pending != 0 {
		t.Errorf("status after = %+v, want 50 published and no error", s)
	}

	// Refused for good: a payload the publish function cannot read.
	pub.mu.Lock()
	pub.fail = func(id string, message json.RawMessage) error {
		if strings.Contains(string(message), "poison") {
			return fmt.Errorf("too big: %w", ErrRejected)
		}
		return nil
	}
	pub.mu.Unlock()
	notify(t, srv.DSN(), "jobs", "poison", "after")
	waitFor(t, "after published", func() bool { return pub.count() == 51 })
	if s := state(b, 0); s.Rejected != 1 || s.Published != 51 {
		t.Errorf("status = %+v, want 1 rejected, 51 published", s)
	}
}

func maxOf(m map[string]int) int {
	most := 0
	for _, v := range m {
		most = max(most, v)
	}
	return most
}

// syncBuffer is a bytes.Buffer safe for the bridge's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCloseWhilePublishFails: Close does not wait for a publish function
// that keeps failing beyond its drain time, and says the channel stopped.
func TestCloseWhilePublishFails(t *testing.T) {
	srv := pgtest.Start(t)
	pub := newPublished()
	pub.fail = func(string, json.RawMessage) error { return errors.New("bus unavailable") }
	var logs syncBuffer
	b := start(t, []Channel{{DSN: srv.DSN(), Channel: "jobs", Topic: "jobs"}}, pub, slog.New(slog.NewTextHandler(&logs, nil)))
	b.drainTimeout = 100 * time.Millisecond
	waitFor(t, "listening", func() bool { return state(b, 0).State == Listening })
	notify(t, srv.DSN(), "jobs", "a", "b", "c")
	waitFor(t, "3 received", func() bool { return state(b, 0).Received == 3 })
	start := time.Now()
	b.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a failing publish function, want about the drain time", d)
	}
	if s := state(b, 0); s.State != Stopped || s.Published != 0 || s.Pending != 3 {
		t.Errorf("status after Close = %+v, want stopped, nothing published, 3 pending", s)
	}
	if !strings.Contains(logs.String(), "stopped with notifications received but not published") || !strings.Contains(logs.String(), "count=3") {
		t.Errorf("log does not count what Close dropped:\n%s", logs.String())
	}
}
