package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// sseEvent is one event as read off the wire.
type sseEvent struct {
	id   uint64
	kind string
	ev   api.WatchEvent
}

// openSSE opens GET path with a Last-Event-ID of after (when > 0) and
// returns the events read, in a channel closed when the stream ends, and
// the function that hangs up.
func openSSE(t *testing.T, base, token, path string, after uint64) (<-chan sseEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(after, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		t.Fatalf("GET %s = %s", path, resp.Status)
	}
	br := bufio.NewReader(resp.Body)
	// The first comment comes once the stream is being read: events
	// stored from now on reach this client.
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		cancel()
		t.Fatalf("GET %s: first line %q, %v", path, line, err)
	}
	ch := make(chan sseEvent, 1024)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		var cur sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if cur.kind != "" {
					ch <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				cur.id, _ = strconv.ParseUint(line[4:], 10, 64)
			case strings.HasPrefix(line, "event: "):
				cur.kind = line[7:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &cur.ev); err != nil {
					t.Errorf("data %q: %v", line, err)
				}
			}
		}
	}()
	return ch, cancel
}

// TestWatchResumeMissesNothing: an SSE client that hangs up and comes
// back with Last-Event-ID gets every event stored after its last one,
// exactly once and in order, those stored while it was away included.
func TestWatchResumeMissesNothing(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	const total = 300
	ch, hangUp := openSSE(t, n.URL(), n.op.Token, "/v1/watch?service=resume", 0)

	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range total {
			node.Notify(n.Node, api.WatchEvent{Kind: api.WatchStarted, Service: "resume", Detail: strconv.Itoa(i)})
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // spread the events over the reconnect
			}
		}
	}()
	seen := make([]int, total)
	var last uint64
	got := 0
	read := func(ch <-chan sseEvent, until int) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for got < until {
			select {
			case e, ok := <-ch:
				if !ok {
					t.Fatalf("stream ended after %d events", got)
				}
				if e.id <= last || e.ev.ID != e.id || e.kind != api.WatchStarted {
					t.Fatalf("event id %d (data id %d, kind %s) after %d", e.id, e.ev.ID, e.kind, last)
				}
				last = e.id
				i, err := strconv.Atoi(e.ev.Detail)
				if err != nil || i != got {
					t.Fatalf("event %q arrived as number %d: out of order or missed", e.ev.Detail, got)
				}
				seen[i]++
				got++
			case <-timeout:
				t.Fatalf("%d of %d events in 20 s", got, until)
			}
		}
	}
	read(ch, total/3)
	hangUp()
	<-published // everything after the first third is stored while away
	ch, hangUp = openSSE(t, n.URL(), n.op.Token, "/v1/watch?service=resume", last)
	defer hangUp()
	read(ch, total)
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("event %d seen %d times", i, c)
		}
	}
	// Nothing more: no event came twice after the last one.
	select {
	case e := <-ch:
		t.Fatalf("an event past the last: %+v", e)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestWatchSubmitterSeesOwn: a submitter watching the node sees the runs
// of its own services only, asking for another's service sees nothing of
// it, and its logs answer 404; the operator sees both.
func TestWatchSubmitterSeesOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	clients := map[string]*api.Client{}
	for _, who := range []string{"alice", "bob"} {
		clients[who] = submitter(t, n, who)
		if _, err := clients[who].Submit(ctx, pack(t, echoService(t, who+"-echo"))); err != nil {
			t.Fatal(err)
		}
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	type seen struct {
		mu     sync.Mutex
		events []api.WatchEvent
	}
	watch := func(c *api.Client, q api.WatchQuery) *seen {
		s := &seen{}
		go c.Watch(watchCtx, q, func(ev api.WatchEvent) error {
			s.mu.Lock()
			s.events = append(s.events, ev)
			s.mu.Unlock()
			return nil
		})
		return s
	}
	aliceAll := watch(clients["alice"], api.WatchQuery{})
	aliceBob := watch(clients["alice"], api.WatchQuery{Service: "bob-echo"})
	op := watch(n.op, api.WatchQuery{})
	time.Sleep(300 * time.Millisecond) // the watches connect; the events below are new to them

	for _, s := range []string{"alice-echo", "bob-echo"} {
		if _, err := n.op.Fire(ctx, s, json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	finished := func(s *seen, service string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, e := range s.events {
			if e.Kind == api.WatchRunEnd && e.Service == service {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(15 * time.Second)
	for !(finished(op, "alice-echo") && finished(op, "bob-echo") && finished(aliceAll, "alice-echo")) {
		if time.Now().After(deadline) {
			t.Fatalf("runs not watched in 15 s: operator %+v, alice %+v", op.events, aliceAll.events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The operator saw bob's run finish after alice's began: anything of
	// bob's for alice would have been sent by now.
	aliceAll.mu.Lock()
	for _, e := range aliceAll.events {
		if e.Service != "alice-echo" {
			t.Errorf("alice was shown %s of %s", e.Kind, e.Service)
		}
	}
	aliceAll.mu.Unlock()
	aliceBob.mu.Lock()
	if len(aliceBob.events) != 0 {
		t.Errorf("alice watching bob-echo was shown %+v", aliceBob.events)
	}
	aliceBob.mu.Unlock()
	err := clients["alice"].Logs(ctx, "bob-echo", api.LogQuery{}, func(api.WatchEvent) error { return nil })
	if status(err) != 404 {
		t.Errorf("alice reading bob's logs: %v, want 404", err)
	}
	if err := clients["alice"].Watch(ctx, api.WatchQuery{Service: "Bob.*"}, func(api.WatchEvent) error { return nil }); status(err) != 400 || !strings.Contains(err.Error(), "service:") {
		t.Errorf("watch of a bad name: %v, want 400 naming service", err)
	}
}

// processNode starts a node whose log goes to logBytes, and skips when
// the process driver cannot run here.
func processNode(t *testing.T, logBytes *atomic.Int64) *testNode {
	t.Helper()
	n := startNodeLogged(t, logBytes)
	for _, d := range n.Node.Node(context.Background()).Drivers {
		if d.Name == "process" {
			sandboxtest.Require(t, d.Enabled, "the process driver is disabled on this host: "+d.Reason)
		}
	}
	return n
}

// countWriter counts what the node logs.
type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// startNodeLogged is startNode with the node's log (info and up, as
// andromeda serve writes it) counted into logBytes.
func startNodeLogged(t *testing.T, logBytes *atomic.Int64) *testNode {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Name = "test"
	cfg.Cache = sharedCache(t)
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(countWriter{logBytes}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	tok, err := node.OperatorToken(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{Node: n, cfg: cfg, op: api.NewClient(n.Addr(), tok)}
}

// pythonService writes a command-mode Python service whose handler runs
// body (indented by four spaces).
func pythonService(t *testing.T, name, body string) string {
	t.Helper()
	dir := t.TempDir()
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: command\n" +
		"triggers:\n  - {kind: manual}\nresources: {memory: 256Mi, timeout: 60s, pids: 16}\ncapabilities: {network: none}\n"
	src := "import sys\n\n\ndef handle(input):\n" + body
	for file, text := range map[string]string{"andromeda.yaml": m, "main.py": src} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var dropMarker = regexp.MustCompile(`^… (\d+) lines? \((\d+) bytes\) dropped: `)

// TestLogFloodCapped: a service that prints 100 MB has at most its
// per-run cap of lines stored, with markers counting every line dropped,
// and the node's own log grows by what a run that prints nothing makes it
// grow, give or take one line saying lines were dropped.
func TestLogFloodCapped(t *testing.T) {
	ctx := context.Background()
	var logBytes atomic.Int64
	n := processNode(t, &logBytes)
	const lines = 1_000_000 // of 100 bytes: 100 MB, half to stdout, half to stderr
	flood := pythonService(t, "flood", `    block = ("x" * 99 + "\n") * 10000
    for i in range(50):
        sys.stdout.write(block)
        sys.stderr.write(block)
    sys.stdout.flush()
    return {"noop": "printed"}
`)
	quiet := pythonService(t, "quiet", "    return {\"noop\": \"quiet\"}\n")
	for _, dir := range []string{flood, quiet} {
		if _, err := n.op.Submit(ctx, pack(t, dir)); err != nil {
			t.Fatal(err)
		}
	}
	fire := func(name string) (api.Run, int64) {
		t.Helper()
		before := logBytes.Load()
		r, err := n.op.Fire(ctx, name, nil)
		if err != nil || r.Outcome != "noop" {
			t.Fatalf("fire %s = %+v, %v", name, r, err)
		}
		return r, logBytes.Load() - before
	}
	fire("quiet") // warm: the first run of a node logs more
	_, quietLog := fire("quiet")
	start, logBefore := time.Now(), logBytes.Load()
	run, _ := fire("flood")
	took := time.Since(start)

	// The run's lines, once its marker is stored.
	var stored, storedBytes, dropped, markers int
	deadline := time.Now().Add(15 * time.Second)
	for {
		stored, storedBytes, dropped, markers = 0, 0, 0, 0
		err := n.op.Logs(ctx, "flood", api.LogQuery{Run: run.ID}, func(ev api.WatchEvent) error {
			if ev.Run != run.ID || ev.Kind != api.WatchRunLog {
				t.Fatalf("logs of run %s gave %+v", run.ID, ev)
			}
			if m := dropMarker.FindStringSubmatch(ev.Line); m != nil {
				k, _ := strconv.Atoi(m[1])
				dropped += k
				markers++
				return nil
			}
			stored++
			storedBytes += len(ev.Line) + 1
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if stored+dropped == lines || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if stored+dropped != lines || markers == 0 {
		t.Fatalf("%d lines stored + %d counted dropped in %d markers, want all %d lines accounted for", stored, dropped, markers, lines)
	}
	if max := 256 << 10; storedBytes > max {
		t.Errorf("%d bytes of lines stored, over the per-run cap of %d", storedBytes, max)
	}
	// A run shorter than the limiter's 10 s reporting period has one
	// marker; a longer one (a slow machine) one per period.
	if markers > 1+int(took/(10*time.Second)) {
		t.Errorf("%d markers for a run of %v", markers, took)
	}
	floodLog := logBytes.Load() - logBefore // the marker is stored: the run's end is logged
	if floodLog > quietLog+1024 {
		t.Errorf("the node's log grew by %d bytes around the flood, %d around a quiet run", floodLog, quietLog)
	}
	t.Logf("flood: %d lines stored (%d bytes), %d dropped in %d marker(s), run %v; node log %d bytes per quiet run", stored, storedBytes, dropped, markers, took, quietLog)
}

// TestWatchAndLogsLive: a watcher sees a run start, its lines and its
// end as they happen, and logs -f shows the lines as they are written.
func TestWatchAndLogsLive(t *testing.T) {
	ctx := context.Background()
	var logBytes atomic.Int64
	n := processNode(t, &logBytes)
	if _, err := n.op.Submit(ctx, pack(t, pythonService(t, "chatty", `    for i in range(3):
        print("line", i)
    return {"noop": "said three lines"}
`))); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	var events, lines []api.WatchEvent
	go n.op.Watch(wctx, api.WatchQuery{Service: "chatty"}, func(ev api.WatchEvent) error {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
		return nil
	})
	go n.op.Logs(wctx, "chatty", api.LogQuery{Follow: true}, func(ev api.WatchEvent) error {
		mu.Lock()
		lines = append(lines, ev)
		mu.Unlock()
		return nil
	})
	time.Sleep(300 * time.Millisecond) // both streams connect
	run, err := n.op.Fire(ctx, "chatty", nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		ev, ln := append([]api.WatchEvent(nil), events...), append([]api.WatchEvent(nil), lines...)
		mu.Unlock()
		var kinds []string
		for _, e := range ev {
			if e.Run == "" {
				// The submit's lifecycle events (service.started) are
				// published as it answers and can reach a watch that
				// connected just after it: not a run's.
				continue
			}
			if e.Run != run.ID {
				t.Fatalf("event of another run: %+v", e)
			}
			k := e.Kind
			if k == api.WatchRunLog {
				k += ":" + e.Line
			}
			if k == api.WatchRunEnd {
				k += ":" + e.Outcome
			}
			kinds = append(kinds, k)
		}
		var text []string
		for _, l := range ln {
			text = append(text, l.Run+" "+l.Line)
		}
		got, gotLines := strings.Join(kinds, ","), strings.Join(text, ",")
		done := len(kinds) == 5 && len(ln) == 3 // the run's events, not the submit's
		if done || time.Now().After(deadline) {
			// Lines may come before or after the run's end: its standard
			// error and its answer travel apart.
			if !done || kinds[0] != api.WatchRunStart || !strings.Contains(got, "run.log:line 0") || !strings.Contains(got, "run.log:line 2") || !strings.Contains(got, "run.finished:noop") {
				t.Fatalf("watched %s; logs -f %q", got, gotLines)
			}
			want := fmt.Sprintf("%s line 0,%[1]s line 1,%[1]s line 2", run.ID)
			if gotLines != want {
				t.Fatalf("logs -f = %q, want %q", gotLines, want)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchOverflowCounted: events handed over faster than the stream
// stores them are dropped, never waited for, and every one is counted:
// stored or dropped.
func TestWatchOverflowCounted(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	metric := func(name string) float64 {
		t.Helper()
		resp, err := http.Get(n.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		v, _ := value(parseMetrics(t, string(raw)), name, nil)
		return v
	}
	base := metric("andromeda_watch_stored_total") + metric("andromeda_watch_dropped_total")
	const total = 30000 // more than the publisher's queue holds
	for i := range total {
		node.Notify(n.Node, api.WatchEvent{Kind: api.WatchStarted, Service: "overflow", Detail: strconv.Itoa(i)})
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		stored, dropped := metric("andromeda_watch_stored_total"), metric("andromeda_watch_dropped_total")
		if stored+dropped-base == total {
			if dropped == 0 {
				t.Errorf("%d events handed over at once, none dropped: the queue is unbounded?", total)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v stored + %v dropped of %d events", stored, dropped, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLogsReadBack: the stored lines of a service read back without
// follow end after the last one, also when resumed after it.
func TestLogsReadBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	if _, err := n.op.Submit(ctx, pack(t, echoService(t, "readback"))); err != nil {
		t.Fatal(err)
	}
	run, err := n.op.Fire(ctx, "readback", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		node.LogLine(n.Node, "readback", run.ID, fmt.Sprint("line ", i))
	}
	node.LogLine(n.Node, "readback", "", "a worker's own line")
	read := func(q api.LogQuery) []api.WatchEvent {
		t.Helper()
		var got []api.WatchEvent
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := n.op.Logs(ctx, "readback", q, func(ev api.WatchEvent) error { got = append(got, ev); return nil }); err != nil || ctx.Err() != nil {
			t.Fatalf("logs %+v: %v, %v", q, err, ctx.Err())
		}
		return got
	}
	deadline := time.Now().Add(10 * time.Second)
	var all []api.WatchEvent
	for len(all) < 4 && time.Now().Before(deadline) {
		all = read(api.LogQuery{})
		time.Sleep(20 * time.Millisecond)
	}
	if len(all) != 4 || all[3].Run != "" || all[3].Line != "a worker's own line" {
		t.Fatalf("all lines = %+v", all)
	}
	if got := read(api.LogQuery{Run: run.ID}); len(got) != 3 || got[2].Line != "line 2" {
		t.Fatalf("run's lines = %+v", got)
	}
	if got := read(api.LogQuery{Run: run.ID, After: all[1].ID}); len(got) != 1 || got[0].Line != "line 2" {
		t.Fatalf("run's lines after the second = %+v", got)
	}
	if got := read(api.LogQuery{Run: run.ID, After: all[2].ID}); len(got) != 0 {
		t.Fatalf("run's lines after its last = %+v", got)
	}
}

// TestDeployProgress: what a driver says of its deploy's long steps
// (sandbox.Progress: a dependency install, an image pull) is a
// service.progress event, stored before the deploy ends, that the
// submitter of a new service sees on a watch of it, and another
// submitter does not.
func TestDeployProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := realWasm(t)
	d.deploying = func(ctx context.Context, spec sandbox.Spec) {
		sandbox.Progress(ctx, "fetching %s: step %d of 2", spec.Service, 1)
		sandbox.Progress(ctx, "fetching %s: step %d of 2", spec.Service, 2)
	}
	n := startNodeWith(t, d)
	clients := map[string]*api.Client{"alice": submitter(t, n, "alice"), "bob": submitter(t, n, "bob")}
	// Another service's events come first in the stream, so that watches
	// from after the first event miss none of alice-echo's, however late
	// they connect.
	if _, err := clients["alice"].Submit(ctx, pack(t, echoService(t, "alice-first"))); err != nil {
		t.Fatal(err)
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	seen := map[string][]string{}
	if _, err := clients["alice"].Submit(ctx, pack(t, echoService(t, "alice-echo"))); err != nil {
		t.Fatal(err)
	}
	for who, c := range clients {
		go c.Watch(watchCtx, api.WatchQuery{Service: "alice-echo", After: 1}, func(ev api.WatchEvent) error {
			mu.Lock()
			defer mu.Unlock()
			seen[who] = append(seen[who], ev.Kind+" "+ev.Detail)
			return nil
		})
	}
	want := []string{
		api.WatchProgress + " fetching alice-echo: step 1 of 2",
		api.WatchProgress + " fetching alice-echo: step 2 of 2",
		api.WatchAdmitted + " ",
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := slices.Clone(seen["alice"])
		mu.Unlock()
		if len(got) >= len(want) {
			if !slices.Equal(got[:len(want)], want) {
				t.Fatalf("alice's watch saw %q, want %q first", got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's watch saw %q after 10 s, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // bob's watch has read the stream as far
	mu.Lock()
	defer mu.Unlock()
	if len(seen["bob"]) != 0 {
		t.Errorf("bob's watch of alice's service saw %q", seen["bob"])
	}
}

// submitter makes a submitter token called name on n and returns a client
// that uses it.
func submitter(t testing.TB, n *testNode, name string) *api.Client {
	t.Helper()
	tok, err := n.op.CreateToken(context.Background(), name, api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(n.Addr(), tok.Secret)
}
