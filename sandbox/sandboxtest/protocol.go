package sandboxtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// The protocol checks speak the runtime protocol with one worker directly
// (a sandbox.RawWorker), for what no deployment ever does: a malformed
// line, an unknown message, an invoke after shutdown, another protocol
// version, a small max_line. They run once, as "protocol/<name>", after
// the cases of each mode.
var protocolChecks = []struct {
	name string
	run  func(t T, p *rawSuite)
}{
	{"handshake", checkHandshake},
	{"cancel", checkRawCancel},
	{"log", checkRawLog},
	{"bad-input", checkBadInput},
	{"unknown-message", checkUnknownMessage},
	{"max-line", checkMaxLine},
	{"eof", checkEOF},
	{"shutdown", checkShutdown},
	{"init-error", checkInitError},
	{"protocol-version", checkProtocolVersion},
}

// rawSuite is what the protocol checks share: how to start a worker.
type rawSuite struct {
	rs    sandbox.RawStarter
	spec  sandbox.Spec
	grace time.Duration // the driver's cancel grace: a cancel must be answered within it
}

// The kit's patience with a worker that has to answer: generous, because
// a 2-core machine running other tests can stall a process for a while;
// a worker that does not answer at all fails after it.
const (
	answerWithin = 10 * time.Second
	// cancelSlack is the least time the kit gives a worker to answer a
	// cancel, whatever the driver's grace.
	cancelSlack = time.Second
)

// rawConn is the kit's end of one raw worker.
type rawConn struct {
	t    T
	w    *sandbox.RawWorker
	init map[string]any
	msgs chan rawMsg   // every line the worker writes, in order; closed at end of output
	gone chan struct{} // closed when the check ends: nobody reads msgs any more

	wmu sync.Mutex

	mu      sync.Mutex
	stderr  tailLines
	longest int
	seen    []rawMsg // what next and await consumed, for the failure messages
}

// rawMsg is one line from the worker, decoded as far as it goes.
type rawMsg struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Protocol    int             `json:"protocol"`
	Concurrency int             `json:"concurrency"`
	Level       string          `json:"level"`
	Message     string          `json:"message"`
	Output      json.RawMessage `json:"output"`
	Error       *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`

	line string    // the line, cut for messages
	size int       // its length in bytes
	bad  error     // why it is not a protocol message
	at   time.Time // when the kit read it
}

func (m rawMsg) String() string {
	if m.bad != nil {
		return fmt.Sprintf("%.200q (%v)", m.line, m.bad)
	}
	return fmt.Sprintf("%.300s", m.line)
}

// code is the error code of an error message, "" for another message.
func (m rawMsg) code() string {
	if m.Type != "error" || m.Error == nil {
		return ""
	}
	return m.Error.Code
}

// tailLines keeps the last lines of a worker's standard error.
type tailLines struct{ lines []string }

func (t *tailLines) add(l string) {
	t.lines = append(t.lines, l)
	if len(t.lines) > 20 {
		t.lines = t.lines[1:]
	}
}

// start starts a worker of the suite's spec and sends it its init, changed
// by edit when not nil. The worker is killed when the check ends.
func (p *rawSuite) start(t T, edit func(init map[string]any)) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := p.rs.StartRaw(ctx, p.spec)
	if err != nil {
		t.Fatalf("start a worker: %v", err)
	}
	c := &rawConn{t: t, w: w, msgs: make(chan rawMsg, 256), gone: make(chan struct{})}
	t.Cleanup(func() {
		close(c.gone)
		w.Kill()
		w.Wait()
	})
	go c.readStdout()
	go c.readStderr()
	if err := json.Unmarshal(w.Init, &c.init); err != nil {
		t.Fatalf("the driver's init message %s: %v", w.Init, err)
	}
	if edit != nil {
		edit(c.init)
	}
	c.send(c.init)
	return c
}

func (c *rawConn) readStdout() {
	defer close(c.msgs)
	br := bufio.NewReaderSize(c.w.Stdout, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			m := rawMsg{size: len(line), at: time.Now()}
			text := bytes.TrimSuffix(line, []byte("\n"))
			m.line = string(text[:min(len(text), 4096)])
			switch {
			case err != nil:
				m.bad = fmt.Errorf("a last line without a newline")
			case !bytes.HasPrefix(text, []byte("{")):
				m.bad = fmt.Errorf("not a JSON object")
			default:
				if jerr := json.Unmarshal(text, &m); jerr != nil {
					m.bad = jerr
				}
			}
			c.mu.Lock()
			c.longest = max(c.longest, len(line))
			c.mu.Unlock()
			select {
			case c.msgs <- m:
			case <-c.gone:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *rawConn) readStderr() {
	br := bufio.NewReader(c.w.Stderr)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			c.mu.Lock()
			c.stderr.add(strings.TrimRight(line, "\n"))
			c.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// send writes v (a string is sent as it is) as one line.
func (c *rawConn) send(v any) {
	c.t.Helper()
	line, ok := v.(string)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			c.t.Fatalf("%v", err)
		}
		line = string(b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := io.WriteString(c.w.Stdin, line+"\n"); err != nil {
		c.t.Fatalf("write %.100s to the worker: %v%s", line, err, c.why())
	}
}

// invoke sends an invoke of the guest operation do with args.
func (c *rawConn) invoke(id, do string, args map[string]any) {
	c.t.Helper()
	msg := map[string]any{"do": do}
	for k, v := range args {
		msg[k] = v
	}
	c.send(map[string]any{"type": "invoke", "id": id, "input": rawInput(id, msg)})
}

// rawInput is the contract's Input for a guest operation.
func rawInput(id string, msg map[string]any) map[string]any {
	return map[string]any{"run_id": "raw-" + id, "service": "conformance", "trigger": map[string]any{"kind": "manual"},
		"message": msg, "state": map[string]any{}, "config": map[string]any{}}
}

// why is the end of what the worker said, for a failure message.
func (c *rawConn) why() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	if len(c.seen) > 0 {
		b.WriteString("; the worker wrote:")
		for _, m := range c.seen[max(0, len(c.seen)-6):] {
			b.WriteString("\n  " + m.String())
		}
	}
	if len(c.stderr.lines) > 0 {
		b.WriteString("\n  stderr: " + strings.Join(c.stderr.lines, "\n  stderr: "))
	}
	return b.String()
}

// next returns the worker's next message, or false at the end of its
// output or after d.
func (c *rawConn) next(d time.Duration) (rawMsg, bool) {
	select {
	case m, ok := <-c.msgs:
		if ok {
			c.mu.Lock()
			c.seen = append(c.seen, m)
			c.mu.Unlock()
		}
		return m, ok
	case <-time.After(d):
		return rawMsg{}, false
	}
}

// await returns the first message for which match is true, and every
// message before it; it fails the check on a line that is not a protocol
// message, at the end of the worker's output, or after d, with what.
func (c *rawConn) await(d time.Duration, what string, match func(rawMsg) bool) (rawMsg, []rawMsg) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var before []rawMsg
	for {
		m, ok := c.next(time.Until(deadline))
		switch {
		case !ok && time.Now().Before(deadline):
			c.t.Fatalf("the worker's output ended while the kit waited for %s%s", what, c.why())
		case !ok:
			c.t.Fatalf("waited %v for %s in vain%s", d, what, c.why())
		case m.bad != nil:
			c.t.Fatalf("while the kit waited for %s, the worker wrote a line that is not a protocol message: %s", what, m)
		case match(m):
			return m, before
		}
		before = append(before, m)
	}
}

// answer waits for the result or error of invocation id.
func (c *rawConn) answer(id string, d time.Duration) (rawMsg, []rawMsg) {
	c.t.Helper()
	return c.await(d, fmt.Sprintf("an answer (result or error) to invocation %q", id), func(m rawMsg) bool {
		return m.ID == id && (m.Type == "result" || m.Type == "error")
	})
}

// ready waits for the answer to init and fails unless it is ready.
func (c *rawConn) ready() rawMsg {
	c.t.Helper()
	m, _ := c.await(answerWithin, "an answer to init", func(m rawMsg) bool { return m.Type != "log" })
	if m.Type != "ready" {
		c.t.Fatalf("answer to init: %s, want a ready message%s", m, c.why())
	}
	return m
}

// echo invokes echo with data and fails unless the result echoes it.
func (c *rawConn) echo(id string, data any) {
	c.t.Helper()
	c.invoke(id, "echo", map[string]any{"data": data})
	m, _ := c.answer(id, answerWithin)
	var out struct {
		Emit []struct {
			Topic   string          `json:"topic"`
			Message json.RawMessage `json:"message"`
		} `json:"emit"`
	}
	if m.Type != "result" || json.Unmarshal(m.Output, &out) != nil || len(out.Emit) != 1 || !jsonEqual(out.Emit[0].Message, mustJSON(data)) {
		c.t.Fatalf("echo %q: answer %s, want a result emitting %s to topic echo%s", id, m, mustJSON(data), c.why())
	}
}

// exit waits up to d for the worker to exit and returns its status; it
// fails the check if the worker is still running then.
func (c *rawConn) exit(d time.Duration, what string) (int, string) {
	c.t.Helper()
	type ended struct {
		status int
		how    string
	}
	done := make(chan ended, 1)
	go func() {
		s, how := c.w.Wait()
		done <- ended{s, how}
	}()
	select {
	case e := <-done:
		return e.status, e.how
	case <-time.After(d):
		c.w.Kill()
		<-done
		c.t.Fatalf("the worker still ran %v after %s%s", d, what, c.why())
	}
	return 0, ""
}

// noop is the noop reason of a result message, or "".
func (m rawMsg) noop() string {
	var out struct {
		Noop string `json:"noop"`
	}
	_ = json.Unmarshal(m.Output, &out)
	return out.Noop
}

func checkHandshake(t T, p *rawSuite) {
	c := p.start(t, nil)
	m := c.ready()
	if m.ID != c.init["id"] {
		t.Errorf("ready has id %q, want the init's %q", m.ID, c.init["id"])
	}
	if m.Protocol < 1 || m.Protocol > 2 {
		t.Errorf("ready says protocol %d, want 1, or 2 (offered by the init's max_protocol)", m.Protocol)
	}
	limit, _ := c.init["max_in_flight"].(float64)
	if m.Concurrency < 1 || float64(m.Concurrency) > limit {
		t.Errorf("ready says concurrency %d, want at least 1 and at most max_in_flight (%v)", m.Concurrency, limit)
	}
	c.echo("1", map[string]any{"handshake": true})
	// Another spelling of the same invoke: fields in another order.
	c.send(`{"input":` + string(mustJSON(rawInput("2", map[string]any{"do": "echo", "data": "reordered"}))) + `,"id":"2","type":"invoke"}`)
	if a, _ := c.answer("2", answerWithin); a.Type != "result" {
		t.Errorf("an invoke with its fields in another order: answer %s, want a result", a)
	}
}

func checkRawCancel(t T, p *rawSuite) {
	c := p.start(t, nil)
	c.ready()
	c.invoke("w1", "wait", nil)
	// Nothing answers a wait by itself: give the handler time to start.
	if m, ok := c.next(300 * time.Millisecond); ok && (m.ID == "w1" && m.Type != "log" || m.bad != nil) {
		t.Fatalf("wait answered before any cancel: %s", m)
	}
	sent := time.Now()
	c.send(`{"type":"cancel","id":"w1"}`)
	limit := max(p.grace, cancelSlack)
	m, _ := c.await(2*limit, `the answer to the cancel of invocation "w1" (it waits until cancelled): an error with code cancelled`, func(m rawMsg) bool {
		return m.ID == "w1" && (m.Type == "result" || m.Type == "error")
	})
	took := m.at.Sub(sent)
	switch {
	case m.code() != "cancelled" && m.Type != "result":
		t.Errorf("the answer to a cancelled wait is %s, want an error with code cancelled", m)
	case took > limit:
		t.Errorf("the cancel of a wait was answered after %v, want within %v: the process driver kills the worker %v after a cancel", took.Round(time.Millisecond), limit, p.grace)
	case took > p.grace:
		t.Logf("the cancel was answered after %v, over the driver's grace of %v (a busy machine?)", took.Round(time.Millisecond), p.grace)
	}
	// A cancel for what is not in flight is ignored, and the worker lives on.
	c.send(`{"type":"cancel","id":"w1"}`)
	c.send(`{"type":"cancel","id":"never-invoked"}`)
	c.echo("e1", "after cancel")
}

func checkRawLog(t T, p *rawSuite) {
	c := p.start(t, nil)
	c.ready()
	const text = "conformance log ✓ \"quoted\""
	for _, level := range []string{"warn", "error"} {
		id := "log-" + level
		c.invoke(id, "log", map[string]any{"level": level, "message": text})
		m, before := c.answer(id, answerWithin)
		if m.Type != "result" || m.noop() != "logged" {
			t.Errorf("log %s: answer %s, want a result with noop \"logged\"", level, m)
		}
		found := false
		for _, b := range before {
			if b.Type == "log" && b.ID == id && b.Level == level && b.Message == text {
				found = true
			}
		}
		if !found {
			t.Errorf("log %s: no log message {\"id\":%q,\"level\":%q,\"message\":%q} before the answer; the worker wrote %v", level, id, level, text, before)
		}
	}
}

func checkBadInput(t T, p *rawSuite) {
	c := p.start(t, nil)
	c.ready()
	for _, bad := range []struct{ line, id, what string }{
		{`{"type":"invoke","id":"bad-1","input":42}`, "bad-1", "an invoke whose input is not an object"},
		{`{"type":"invoke","id":"bad-2","input":"{\"run_id\":1}"}`, "bad-2", "an invoke whose input is a string"},
		{`this line is not JSON {"type":"invoke","id":"bad-3"`, "", "a line that is not JSON (no id to read)"},
		{`["type","invoke"]`, "", "a line that is JSON but not an object"},
	} {
		c.send(bad.line)
		m, _ := c.await(answerWithin, "the answer to "+bad.what, func(m rawMsg) bool { return m.Type == "error" || m.Type == "result" })
		if m.code() != "bad_input" || m.ID != bad.id {
			t.Errorf("%s: answer %s, want an error with code bad_input and id %q", bad.what, m, bad.id)
		}
	}
	c.echo("after-bad", "still alive")
}

func checkUnknownMessage(t T, p *rawSuite) {
	c := p.start(t, nil)
	c.ready()
	c.send(`{"type":"conformance-unknown","id":"u-1","payload":{"nested":[1,2,3]}}`)
	c.send(`{"type":"invoke","id":"u-2","input":` + string(mustJSON(rawInput("u-2", map[string]any{"do": "echo", "data": 1}))) + `,"conformance_field":{"ignored":true}}`)
	m, before := c.answer("u-2", answerWithin)
	if m.Type != "result" {
		t.Errorf("an invoke with an unknown field: answer %s, want a result", m)
	}
	for _, b := range append(before, m) {
		if b.ID == "u-1" {
			t.Errorf("the worker answered a message of an unknown type: %s, want it ignored", b)
		}
	}
	c.echo("u-3", "after unknown")
}

func checkMaxLine(t T, p *rawSuite) {
	const maxLine = 64 << 10
	c := p.start(t, func(init map[string]any) { init["max_line"] = maxLine })
	c.ready()
	c.invoke("small", "fill", map[string]any{"size": 1000})
	if m, _ := c.answer("small", answerWithin); m.Type != "result" || m.noop() != strings.Repeat("x", 1000) {
		t.Errorf("fill 1000: answer %.200s, want a result with a noop of 1000 x", m)
	}
	c.invoke("big", "fill", map[string]any{"size": 2 * maxLine})
	m, _ := c.answer("big", answerWithin)
	if m.Type != "error" || m.code() != "error" {
		t.Errorf("fill %d with max_line %d: answer %.200s, want an error with code error (the result would not fit on a line)", 2*maxLine, maxLine, m)
	}
	c.echo("after-big", "fits")
	c.mu.Lock()
	longest := c.longest
	c.mu.Unlock()
	if longest > maxLine {
		t.Errorf("the worker wrote a line of %d bytes, over the init's max_line of %d", longest, maxLine)
	}
}

func checkEOF(t T, p *rawSuite) {
	c := p.start(t, nil)
	c.ready()
	// An invoke read before the end of input is run and answered.
	c.invoke("last", "echo", map[string]any{"data": "before eof"})
	c.w.Stdin.Close()
	if m, _ := c.answer("last", answerWithin); m.Type != "result" {
		t.Errorf("an invoke just before the end of input: answer %s, want its result", m)
	}
	if status, how := c.exit(answerWithin, "the end of its input"); status != 0 {
		t.Errorf("at the end of its input the worker %s, want status 0%s", how, c.why())
	}
}

func checkShutdown(t T, p *rawSuite) {
	c := p.start(t, nil)
	ready := c.ready()
	c.invoke("running", "wait", nil)
	want := 2
	if ready.Concurrency > 1 {
		c.invoke("queued", "echo", map[string]any{"data": "before shutdown"})
		want = 3
	}
	time.Sleep(100 * time.Millisecond) // read and started
	const grace = 2 * time.Second
	sent := time.Now()
	by := sent.Add(grace)
	c.send(fmt.Sprintf(`{"type":"shutdown","id":"shutdown","by":%d}`, by.UnixMilli()))
	c.invoke("late", "echo", map[string]any{"data": "after shutdown"})
	answers := map[string]rawMsg{}
	for len(answers) < want {
		m, _ := c.await(grace+answerWithin, "the answers to running, queued and late", func(m rawMsg) bool {
			return m.Type == "result" || m.Type == "error"
		})
		answers[m.ID] = m
	}
	if m, ok := answers["queued"]; ok && m.Type != "result" {
		t.Errorf("an invoke read before shutdown: answer %s, want its result", m)
	}
	if m := answers["late"]; m.code() != "unavailable" {
		t.Errorf("an invoke after shutdown: answer %s, want an error with code unavailable", m)
	}
	m := answers["running"]
	if m.code() != "cancelled" {
		t.Errorf("a wait still running near the shutdown's by: answer %s, want an error with code cancelled", m)
	}
	// Cancelled shortly before by: not at once (the shutdown lets what runs
	// finish), not after by (the runner kills the worker then).
	if early := by.Add(-grace / 2); m.at.Before(early) {
		t.Errorf("the wait was cancelled %v after the shutdown, want it left to run until shortly (100 ms) before by, %v after", m.at.Sub(sent).Round(time.Millisecond), grace)
	}
	if late := by.Add(500 * time.Millisecond); m.at.After(late) {
		t.Errorf("the wait was cancelled %v after by, want it cancelled before by", m.at.Sub(by).Round(time.Millisecond))
	}
	if status, how := c.exit(time.Until(by)+2*time.Second, "shutdown with nothing left in flight"); status != 0 {
		t.Errorf("after shutdown the worker %s, want status 0%s", how, c.why())
	}
}

func checkInitError(t T, p *rawSuite) {
	var missing string
	c := p.start(t, func(init map[string]any) {
		mods, _ := init["modules"].([]any)
		if len(mods) == 0 {
			return
		}
		m, _ := mods[0].(map[string]any)
		entry, _ := m["entry"].(string)
		i := strings.LastIndex(entry, "/")
		missing = entry[:i+1] + "conformance-no-such-module"
		m["entry"] = missing
	})
	if missing == "" {
		t.Fatalf("the driver's init message %s names no module", c.w.Init)
	}
	m, _ := c.await(answerWithin, "an answer to an init whose module does not exist", func(m rawMsg) bool { return m.Type != "log" })
	if m.code() != "init" || m.ID != c.init["id"] {
		t.Errorf("init of a module whose entry %s does not exist: answer %s, want an error with code init and the init's id", missing, m)
	}
	if status, how := c.exit(answerWithin, "its init error"); status == 0 {
		t.Errorf("after its init error the worker %s, want a non-zero status", how)
	}
}

func checkProtocolVersion(t T, p *rawSuite) {
	// No worker speaks 99: the runner's versions are 1 and 2, and a
	// worker may speak either.
	c := p.start(t, func(init map[string]any) { init["protocol"] = 99; delete(init, "max_protocol") })
	m, _ := c.await(answerWithin, "an answer to an init of protocol 99", func(m rawMsg) bool { return m.Type != "log" })
	if m.code() != "init" || m.ID != c.init["id"] || !strings.Contains(m.Error.Message, "1") {
		t.Errorf("init of protocol 99: answer %s, want an error with code init naming the version the worker speaks (1)", m)
	}
	if status, how := c.exit(answerWithin, "refusing the protocol version"); status == 0 {
		t.Errorf("after refusing protocol 99 the worker %s, want a non-zero status", how)
	}
}
