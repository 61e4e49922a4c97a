package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Tokens the tests' Authorize knows.
const (
	goodToken     = "tok-runtime"
	operatorToken = "tok-operator"
)

func authorize(_ context.Context, token string) (string, error) {
	switch token {
	case goodToken:
		return RoleRuntime, nil
	case operatorToken:
		return "operator", nil
	}
	return "", errors.New("unknown token")
}

// logSink is a slog.Handler that hands every record's message to a
// channel, so a test can wait for a module's ctx.log line.
type logSink struct{ lines chan string }

func (s logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s logSink) Handle(_ context.Context, r slog.Record) error {
	select {
	case s.lines <- r.Message:
	default: // a test that does not read them
	}
	return nil
}
func (s logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s logSink) WithGroup(string) slog.Handler      { return s }

// testHub is a Hub served by an httptest server, both closed when t ends.
type testHub struct {
	*Hub
	srv   *httptest.Server
	lines chan string // the hub's log messages
}

func newTestHub(t testing.TB, cfg Config) *testHub {
	t.Helper()
	if cfg.Authorize == nil {
		cfg.Authorize = authorize
	}
	lines := make(chan string, 1024)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(logSink{lines})
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(h.cfg.Path, h)
	mux.Handle(h.cfg.Path+"/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return &testHub{Hub: h, srv: srv, lines: lines}
}

// pageURL is the page's address with a fragment.
func (th *testHub) pageURL(fragment string) string {
	return th.srv.URL + th.cfg.Path + "#" + fragment
}

// info returns runtime id's entry in Runtimes.
func (th *testHub) info(id string) (Info, bool) {
	for _, info := range th.Runtimes() {
		if info.ID == id {
			return info, true
		}
	}
	return Info{}, false
}

// fakePage is a WebSocket client speaking the page's protocol from Go,
// for what a browser would not send.
type fakePage struct {
	conn *websocket.Conn
}

func dialPage(t *testing.T, th *testHub) *fakePage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(th.srv.URL, "http")+th.cfg.Path+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(-1)
	t.Cleanup(func() { conn.CloseNow() })
	return &fakePage{conn: conn}
}

func (p *fakePage) send(t *testing.T, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write %.60s: %v", msg, err)
	}
}

// next returns the next message, or the error that ended the connection.
func (p *fakePage) next(t *testing.T) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, data, err := p.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("the hub sent %q: %v", data, err)
	}
	return m, nil
}

// closed waits for the hub to close the connection and returns its status
// and reason.
func (p *fakePage) closed(t *testing.T) (websocket.StatusCode, string) {
	t.Helper()
	for {
		m, err := p.next(t)
		if err == nil {
			continue // messages before the close
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read = %v (after %v), want a close", err, m)
		}
		return ce.Code, ce.Reason
	}
}

func helloMsg(runtime string) string {
	return `{"type":"hello","id":"hello","runtime":"` + runtime + `","name":"fake","version":"go","languages":["javascript"],"protocol":1}`
}

// connect authenticates p as runtime and waits for the welcome.
func (p *fakePage) connect(t *testing.T, runtime string) {
	t.Helper()
	p.send(t, `{"type":"auth","id":"auth","token":"`+goodToken+`"}`)
	p.send(t, helloMsg(runtime))
	m, err := p.next(t)
	if err != nil || m["type"] != "welcome" || m["runtime"] != runtime {
		t.Fatalf("after hello: %v, %v; want a welcome of %s", m, err, runtime)
	}
}

func TestConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "authorize: required") {
		t.Errorf("New(Config{}) = %v, want authorize: required", err)
	}
	_, err := New(Config{Authorize: authorize, Path: "/x/", MaxInFlight: -1, MaxMessage: 10})
	for _, want := range []string{`path "/x/"`, "max in flight -1", "max message 10"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New = %v, want an error with %q", err, want)
		}
	}
	h, err := New(Config{Authorize: authorize})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.cfg.MaxInFlight, DefaultConfig().MaxInFlight; got != want {
		t.Errorf("MaxInFlight = %d, want the default %d", got, want)
	}
	h.Close()
	h.Close() // twice is fine
}

// TestServe checks what the hub serves over plain HTTP.
func TestServe(t *testing.T) {
	th := newTestHub(t, Config{})
	for _, c := range []struct {
		method, path string
		status       int
		csp          string // a part of the Content-Security-Policy
	}{
		{"GET", "/runtime/browser", 200, "connect-src 'self'"},
		{"GET", "/runtime/browser/", 200, "worker-src 'self'"},
		{"HEAD", "/runtime/browser", 200, "script-src 'sha256-"},
		{"GET", "/runtime/browser/worker.js", 200, "script-src 'unsafe-eval'"},
		{"POST", "/runtime/browser", 405, ""},
		{"GET", "/runtime/browser/other", 404, ""},
		{"GET", "/runtime/browser/ws", 426, ""}, // not an upgrade
	} {
		req, _ := http.NewRequest(c.method, th.srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s = %d, want %d (%.100s)", c.method, c.path, resp.StatusCode, c.status, body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, c.csp) {
			t.Errorf("%s %s: Content-Security-Policy %q, want it to hold %q", c.method, c.path, csp, c.csp)
		}
	}
	resp, err := http.Get(th.srv.URL + "/runtime/browser/worker.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "// ---- andromeda module loader: begin ----") {
		t.Errorf("worker.js does not hold the Node.js shim's loader section")
	}
}

// TestHandshake checks what the hub refuses before a page is a runtime:
// each case is closed with its status and a reason the page shows, and
// no runtime is listed.
func TestHandshake(t *testing.T) {
	th := newTestHub(t, Config{HandshakeTimeout: 500 * time.Millisecond})
	for _, c := range []struct {
		name   string
		send   []string
		code   websocket.StatusCode
		reason string
	}{
		{"bad-token", []string{`{"type":"auth","id":"auth","token":"nope"}`}, websocket.StatusPolicyViolation, "unauthorized: the token is not valid"},
		{"no-token", []string{`{"type":"auth","id":"auth"}`}, websocket.StatusPolicyViolation, "unauthorized"},
		{"operator-token", []string{`{"type":"auth","id":"auth","token":"` + operatorToken + `"}`}, websocket.StatusPolicyViolation, "needs a runtime token, not operator"},
		{"hello-first", []string{helloMsg("r1")}, websocket.StatusPolicyViolation, "the first message must be auth"},
		{"nothing", nil, websocket.StatusPolicyViolation, "no token and hello in time"},
		{"garbage", []string{`not json`}, websocket.StatusProtocolError, "not a JSON object"},
		{"array", []string{`[1,2]`}, websocket.StatusProtocolError, "not a JSON object"},
		{"wrong-types", []string{`{"type":"auth","id":1,"token":2}`}, websocket.StatusProtocolError, "protocol error"},
		{"no-type", []string{`{}`}, websocket.StatusProtocolError, "without a type"},
		{"old-protocol", []string{`{"type":"auth","id":"auth","token":"` + goodToken + `"}`,
			`{"type":"hello","id":"hello","runtime":"r1","languages":["javascript"],"protocol":7}`}, websocket.StatusProtocolError, "protocol 7 is not supported"},
		{"bad-runtime-id", []string{`{"type":"auth","id":"auth","token":"` + goodToken + `"}`, helloMsg("../x")}, websocket.StatusProtocolError, "runtime id"},
		{"no-javascript", []string{`{"type":"auth","id":"auth","token":"` + goodToken + `"}`,
			`{"type":"hello","id":"hello","runtime":"r1","languages":["python"],"protocol":1}`}, websocket.StatusProtocolError, "must include javascript"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := dialPage(t, th)
			for _, m := range c.send {
				p.send(t, m)
			}
			code, reason := p.closed(t)
			if code != c.code || !strings.Contains(reason, c.reason) {
				t.Errorf("closed with %d %q, want %d with %q", code, reason, c.code, c.reason)
			}
			if rs := th.Runtimes(); len(rs) != 0 {
				t.Errorf("Runtimes() = %+v, want none", rs)
			}
		})
	}
	t.Run("binary", func(t *testing.T) {
		p := dialPage(t, th)
		p.conn.Write(context.Background(), websocket.MessageBinary, []byte(`{"type":"auth"}`))
		if code, _ := p.closed(t); code != websocket.StatusUnsupportedData {
			t.Errorf("closed with %d, want %d", code, websocket.StatusUnsupportedData)
		}
	})
}

// TestBadPage has a connected page send what no page should: each is
// closed, what was in flight on it fails with ErrGone, and the hub goes
// on serving.
func TestBadPage(t *testing.T) {
	th := newTestHub(t, Config{MaxMessage: 64 << 10})
	mod := Module{ID: "m", Code: "module.exports = () => ({})"}
	for _, c := range []struct {
		name, send string
		code       websocket.StatusCode
	}{
		{"garbage", "}{", websocket.StatusProtocolError},
		{"result-not-object", `{"type":"result","id":"ID","output":[1]}`, websocket.StatusProtocolError},
		{"result-string", `{"type":"result","id":"ID","output":"x"}`, websocket.StatusProtocolError},
		{"error-without-message", `{"type":"error","id":"ID","error":{"code":"error"}}`, websocket.StatusProtocolError},
		{"hello-again", helloMsg("again"), websocket.StatusProtocolError},
		{"too-big", `{"type":"log","id":"ID","message":"` + strings.Repeat("x", 65<<10) + `"}`, websocket.StatusMessageTooBig},
		{"deep", `{"type":"result","id":"ID","output":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`, websocket.StatusProtocolError},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt := "bad-" + c.name
			p := dialPage(t, th)
			p.connect(t, rt)
			done := make(chan error, 1)
			go func() {
				_, err := th.Invoke(context.Background(), rt, mod, []byte(`{}`))
				done <- err
			}()
			var id string
			for id == "" {
				m, err := p.next(t)
				if err != nil {
					t.Fatal(err)
				}
				if m["type"] == "invoke" {
					id = m["id"].(string)
				}
			}
			p.send(t, strings.ReplaceAll(c.send, "ID", id))
			if code, reason := p.closed(t); code != c.code {
				t.Errorf("closed with %d %q, want %d", code, reason, c.code)
			}
			if err := <-done; !errors.Is(err, ErrGone) {
				t.Errorf("Invoke = %v, want ErrGone", err)
			}
			if info, ok := th.info(rt); !ok || info.Connected || info.Reason == "" {
				t.Errorf("runtime %s: %+v, want it listed as gone with the reason", rt, info)
			}
		})
	}
}

// TestFakePage speaks the protocol from Go: the load comes before the
// first invoke of a module and once per connection, answers are matched
// by id in any order, an error names the module, a late answer after a
// cancel is dropped, and a page that takes a connected runtime's id
// replaces it.
func TestFakePage(t *testing.T) {
	th := newTestHub(t, Config{})
	ctx := context.Background()
	p := dialPage(t, th)
	p.connect(t, "r1")
	if rs := th.Runtimes(); len(rs) != 1 || rs[0].ID != "r1" || !rs[0].Connected || rs[0].Name != "fake" || rs[0].Languages[0] != Language {
		t.Fatalf("Runtimes() = %+v, want r1 connected", rs)
	}
	mod := Module{ID: "echo", Code: "module.exports = (i) => i.message", Config: json.RawMessage(`{"k":1}`)}

	type result struct {
		out []byte
		err error
	}
	results := make([]chan result, 3)
	for i := range results {
		results[i] = make(chan result, 1)
		go func() {
			out, err := th.Invoke(ctx, "r1", mod, fmt.Appendf(nil, `{"message":{"n":%d}}`, i))
			results[i] <- result{out, err}
		}()
	}
	var loads int
	ids := map[string]string{} // message id → its input
	for len(ids) < 3 {
		m, err := p.next(t)
		if err != nil {
			t.Fatal(err)
		}
		switch m["type"] {
		case "load":
			loads++
			if len(ids) > 0 || m["name"] != "echo" || m["code"] != mod.Code || m["config"].(map[string]any)["k"] != 1.0 {
				t.Errorf("load %v, want echo's code and config before its invokes", m)
			}
		case "invoke":
			in, _ := json.Marshal(m["input"])
			ids[m["id"].(string)] = string(in)
			if m["module"] != mod.key() {
				t.Errorf("invoke of module %v, want %s", m["module"], mod.key())
			}
		}
	}
	if loads != 1 {
		t.Errorf("%d loads, want 1", loads)
	}
	// Answer in an order of our own: the last an error.
	n := 0
	for id, in := range ids {
		if n++; n < 3 {
			p.send(t, `{"type":"result","id":"`+id+`","output":`+in+`}`)
		} else {
			p.send(t, `{"type":"error","id":"`+id+`","error":{"code":"error","message":"boom","stack":"at x"}}`)
		}
	}
	var errs, oks int
	for i, c := range results {
		r := <-c
		var me *Error
		switch {
		case r.err == nil:
			oks++
			if want := fmt.Sprintf(`{"message":{"n":%d}}`, i); string(r.out) != want {
				t.Errorf("Invoke %d = %s, want %s", i, r.out, want)
			}
		case errors.As(r.err, &me):
			errs++
			if me.Module != "echo" || me.Runtime != "r1" || me.Message != "boom" || me.Stack != "at x" || me.Code != "error" {
				t.Errorf("error %+v, want boom of echo on r1", me)
			}
			if !strings.Contains(r.err.Error(), "module echo on browser runtime r1: boom") {
				t.Errorf("error %q does not name the module", r.err)
			}
		default:
			t.Errorf("Invoke %d = %v", i, r.err)
		}
	}
	if oks != 2 || errs != 1 {
		t.Errorf("%d ok and %d errors, want 2 and 1", oks, errs)
	}

	// A deadline: the hub cancels, and drops the late answer.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := th.Invoke(dctx, "r1", mod, []byte(`{}`))
		done <- err
	}()
	m, _ := p.next(t)
	if m["type"] != "invoke" || m["deadline"] == nil {
		t.Fatalf("got %v, want an invoke with a deadline", m)
	}
	id := m["id"].(string)
	if c, _ := p.next(t); c["type"] != "cancel" || c["id"] != id {
		t.Errorf("got %v, want the cancel of %s", c, id)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Invoke = %v, want the deadline", err)
	}
	p.send(t, `{"type":"result","id":"`+id+`","output":{}}`) // late: dropped

	// Another page takes r1: the first is closed with StatusReplaced and
	// the new one gets the module loaded again.
	q := dialPage(t, th)
	q.connect(t, "r1")
	if code, _ := p.closed(t); code != StatusReplaced {
		t.Errorf("the replaced page was closed with %d, want %d", code, StatusReplaced)
	}
	go th.Invoke(ctx, "r1", mod, []byte(`{}`))
	if m, _ := q.next(t); m["type"] != "load" {
		t.Errorf("the new page got %v first, want the load", m)
	}
}

// TestInvokeErrors checks what Invoke refuses before anything is sent.
func TestInvokeErrors(t *testing.T) {
	th := newTestHub(t, Config{MaxMessage: 64 << 10})
	ctx := context.Background()
	p := dialPage(t, th)
	p.connect(t, "r1")
	for _, c := range []struct {
		name    string
		runtime string
		mod     Module
		input   string
		want    error
	}{
		{"unknown-runtime", "nobody", Module{ID: "m", Code: "x"}, `{}`, ErrGone},
		{"bad-module-id", "r1", Module{ID: "a b", Code: "x"}, `{}`, ErrInvalid},
		{"no-code", "r1", Module{ID: "m"}, `{}`, ErrInvalid},
		{"config-not-object", "r1", Module{ID: "m", Code: "x", Config: json.RawMessage(`[1]`)}, `{}`, ErrInvalid},
		{"input-not-object", "r1", Module{ID: "m", Code: "x"}, `[1]`, ErrInvalid},
		{"input-not-json", "r1", Module{ID: "m", Code: "x"}, `{`, ErrInvalid},
		{"input-too-large", "r1", Module{ID: "m", Code: "x"}, `{"s":"` + strings.Repeat("x", 64<<10) + `"}`, ErrTooLarge},
		{"code-too-large", "r1", Module{ID: "m", Code: strings.Repeat("x", 64<<10)}, `{}`, ErrTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := th.Invoke(ctx, c.runtime, c.mod, []byte(c.input)); !errors.Is(err, c.want) {
				t.Errorf("Invoke = %v, want %v", err, c.want)
			}
		})
	}
	th.Close()
	if _, err := th.Invoke(ctx, "r1", Module{ID: "m", Code: "x"}, []byte(`{}`)); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close = %v, want ErrClosed", err)
	}
	if err := th.Wait(ctx, "r1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close = %v, want ErrClosed", err)
	}
}

// TestBackpressure: with MaxInFlight in flight, Invoke waits for a slot
// or its context, and takes the slot an answer frees.
func TestBackpressure(t *testing.T) {
	th := newTestHub(t, Config{MaxInFlight: 2})
	ctx := context.Background()
	p := dialPage(t, th)
	p.connect(t, "r1")
	mod := Module{ID: "m", Code: "x"}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			th.Invoke(ctx, "r1", mod, []byte(`{}`))
		}()
	}
	var ids []string
	for len(ids) < 2 {
		m, err := p.next(t)
		if err != nil {
			t.Fatal(err)
		}
		if m["type"] == "invoke" {
			ids = append(ids, m["id"].(string))
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := th.Invoke(short, "r1", mod, []byte(`{}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a third Invoke = %v, want to wait for a slot until its deadline", err)
	}
	if rs := th.Runtimes(); rs[0].InFlight != 2 || rs[0].Modules != 1 {
		t.Errorf("Runtimes() = %+v, want 2 in flight and 1 module", rs)
	}
	third := make(chan error, 1)
	go func() {
		_, err := th.Invoke(ctx, "r1", mod, []byte(`{}`))
		third <- err
	}()
	p.send(t, `{"type":"result","id":"`+ids[0]+`","output":{}}`)
	m, err := p.next(t)
	if err != nil || m["type"] != "invoke" {
		t.Fatalf("got %v, %v; want the third invoke once a slot is free", m, err)
	}
	p.send(t, `{"type":"result","id":"`+m["id"].(string)+`","output":{}}`)
	if err := <-third; err != nil {
		t.Errorf("the third Invoke = %v", err)
	}
	p.send(t, `{"type":"result","id":"`+ids[1]+`","output":{}}`)
	wg.Wait()
}

// FuzzPageMessage feeds what a page might send to the hub's reading of
// it: no input panics, an answer reaches only the invocation it names,
// and an output handed on is a JSON object.
func FuzzPageMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"result","id":"1","output":{"noop":"x"}}`,
		`{"type":"error","id":"1","error":{"code":"error","message":"boom","stack":"at x"}}`,
		`{"type":"log","id":"1","level":"warn","message":"careful"}`,
		`{"type":"usage","id":"1","counters":{"rows":3}}`,
		`{"type":"result","id":"1","output":[]}`,
		`{"type":"result","id":"1"}`,
		`{"type":"hello","id":"hello","runtime":"r","languages":["javascript"],"protocol":1}`,
		`{"type":"later","id":"1","x":{"y":[1,2,3]}}`,
		`{"type":"error","id":"1","error":null}`,
		`{"type":"result","id":"1","output":{"a":` + strings.Repeat("[", 5000) + `}}`,
		"{\"type\":\"log\",\"id\":\"1\",\"message\":\"\xff\xfe\"}",
		`null`, `[]`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(seed), true)
	}
	h, err := New(Config{Authorize: authorize})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, text bool) {
		typ := websocket.MessageText
		if !text {
			typ = websocket.MessageBinary
		}
		m, err := parseMessage(typ, data)
		if err != nil {
			var ce *closeError
			if !errors.As(err, &ce) || ce.code < 1000 || len(ce.reason) > 123 {
				t.Fatalf("parseMessage(%q) = %v, want a close with a status and a short reason", data, err)
			}
			return
		}
		c := &call{module: "m", done: make(chan answer, 1)}
		s := &session{hub: h, rt: &runtime{id: "r"}, pending: map[string]*call{"1": c}, loaded: map[string]string{}}
		if err := s.handle(m); err != nil {
			var ce *closeError
			if !errors.As(err, &ce) || len(ce.reason) > 123 {
				t.Fatalf("handle(%q) = %v, want a close with a short reason", data, err)
			}
			return
		}
		select {
		case a := <-c.done:
			if m.ID != "1" {
				t.Fatalf("the answer to %q reached invocation 1", m.ID)
			}
			if a.err == nil && !json.Valid(a.output) || a.err == nil && a.output[0] != '{' {
				t.Fatalf("output %q handed on, want a JSON object", a.output)
			}
		default:
		}
	})
}

// TestWelcomeFirst: an Invoke that finds a runtime the moment its page is
// attached waits for the welcome to be sent first, which the page needs
// before anything else.
func TestWelcomeFirst(t *testing.T) {
	th := newTestHub(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		id := fmt.Sprintf("w%d", i)
		go func() {
			if th.Wait(ctx, id) == nil {
				th.Invoke(ctx, id, Module{ID: "m", Code: "x"}, []byte(`{}`))
			}
		}()
		p := dialPage(t, th)
		p.connect(t, id) // fails unless the welcome comes first
		if m, err := p.next(t); err != nil || m["type"] != "load" {
			t.Fatalf("after the welcome: %v, %v; want the load", m, err)
		}
	}
}

// TestPageLogCapped: a module's log lines reach the node's log cut to
// maxLogLine each and at most maxLogBytes per invocation; the rest are
// dropped, and that is said once. Lines of no invocation in flight are
// dropped.
func TestPageLogCapped(t *testing.T) {
	var buf bytes.Buffer
	h, err := New(Config{Authorize: authorize, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := &call{module: "m", done: make(chan answer, 1)}
	s := &session{hub: h, rt: &runtime{id: "r"}, pending: map[string]*call{"1": c}, loaded: map[string]string{}}
	send := func(id, text string) {
		t.Helper()
		m, err := parseMessage(websocket.MessageText, []byte(`{"type":"log","id":"`+id+`","message":"`+text+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.handle(m); err != nil {
			t.Fatal(err)
		}
	}
	send("1", strings.Repeat("y", 5000))
	for range 100 {
		send("1", strings.Repeat("x", 500))
	}
	send("2", "nobody waits for this")
	out := buf.String()
	lines := strings.Count(out, "\n")
	if !strings.Contains(out, strings.Repeat("y", maxLogLine)+" …(cut)") || strings.Contains(out, strings.Repeat("y", maxLogLine+1)) {
		t.Errorf("a 5000-byte line was not cut to %d bytes", maxLogLine)
	}
	if want := 1 + (maxLogBytes-maxLogLine-8)/500 + 1; lines > want+1 || lines < want-1 {
		t.Errorf("%d lines logged, want about %d (the cap of %d bytes, then one saying so):\n%.300s", lines, want, maxLogBytes, out)
	}
	if strings.Count(out, "over the cap") != 1 || strings.Contains(out, "nobody waits") {
		t.Errorf("the cap said %d times; a line of no invocation logged: %v", strings.Count(out, "over the cap"), strings.Contains(out, "nobody waits"))
	}
}
