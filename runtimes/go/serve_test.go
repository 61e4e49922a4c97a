package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
)

// session runs Run on pipes and lets a test talk to it as the runner.
type session struct {
	t    *testing.T
	in   *io.PipeWriter
	out  *bufio.Reader
	done chan error
}

func start(t *testing.T, h Handler) *session {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, in: inW, out: bufio.NewReader(outR), done: make(chan error, 1)}
	go func() {
		err := Run(context.Background(), h, inR, outW)
		outW.Close()
		s.done <- err
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return s
}

func (s *session) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

func (s *session) recv() Message {
	s.t.Helper()
	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		line, err := s.out.ReadString('\n')
		ch <- res{line, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			s.t.Fatalf("read: %v", r.err)
		}
		var m Message
		if err := json.Unmarshal([]byte(r.line), &m); err != nil {
			s.t.Fatalf("worker wrote %q: %v", r.line, err)
		}
		return m
	case <-time.After(5 * time.Second):
		s.t.Fatal("no message from the worker in 5 s")
	}
	return Message{}
}

func (s *session) init() Message {
	s.send(`{"type":"init","id":"i","protocol":1,"modules":[{"id":"main","entry":"serve_test.go"}],"max_in_flight":8}`)
	return s.recv()
}

func (s *session) wait() error {
	s.t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(5 * time.Second):
		s.t.Fatal("Run did not return in 5 s")
	}
	return nil
}

func echo(_ context.Context, in contract.Input) (contract.Output, error) {
	return contract.Output{Emit: []contract.Emit{{Topic: "echo", Message: in.Message}}}, nil
}

func TestReadyAndEcho(t *testing.T) {
	s := start(t, echo)
	if m := s.init(); m.Type != TypeReady || m.ID != "i" || m.Protocol != Version || m.Runtime != "go" || m.Concurrency != 8 {
		t.Fatalf("answer to init = %+v, want ready with protocol %d, runtime go, concurrency 8", m, Version)
	}
	// The driver's spelling (fast path), another spelling, and a deadline.
	for _, line := range []string{
		`{"type":"invoke","id":"1","input":{"run_id":"r1","message":{"a":"<b> & é"}}}`,
		`{"id":"2","input":{"message":[1,2]},"type":"invoke"}`,
		`{"type":"invoke","id":"3","input":{"message":"d"},"deadline":` + jsonInt(time.Now().Add(time.Minute).UnixMilli()) + `}`,
	} {
		s.send(line)
		m := s.recv()
		if m.Type != TypeResult {
			t.Fatalf("%s: answer %+v, want a result", line, m)
		}
		var out contract.Output
		if err := json.Unmarshal(m.Output, &out); err != nil || len(out.Emit) != 1 {
			t.Fatalf("%s: output %s", line, m.Output)
		}
		var in struct {
			Input struct{ Message json.RawMessage } `json:"input"`
		}
		_ = json.Unmarshal([]byte(line), &in)
		if string(out.Emit[0].Message) != string(in.Input.Message) {
			t.Errorf("%s: echoed %s, want %s", line, out.Emit[0].Message, in.Input.Message)
		}
	}
	s.in.Close()
	if err := s.wait(); err != nil {
		t.Errorf("Run after EOF = %v, want nil", err)
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestErrors(t *testing.T) {
	s := start(t, func(ctx context.Context, in contract.Input) (contract.Output, error) {
		switch string(in.Message) {
		case `"panic"`:
			panic("boom")
		case `"error"`:
			return contract.Output{}, errors.New("it failed")
		}
		Log(ctx, "warn", "about to answer")
		return contract.Output{Noop: "fine"}, nil
	})
	s.init()
	s.send(`{"type":"invoke","id":"p","input":{"message":"panic"}}`)
	if m := s.recv(); m.Type != TypeError || m.Error.Code != CodePanic || !strings.Contains(m.Error.Message, "boom") || !strings.Contains(m.Error.Stack, "goroutine") {
		t.Errorf("panic: %+v %+v, want an error with code panic, the message and a stack", m, m.Error)
	}
	s.send(`{"type":"invoke","id":"e","input":{"message":"error"}}`)
	if m := s.recv(); m.Type != TypeError || m.Error.Code != CodeError || m.Error.Message != "it failed" {
		t.Errorf("error: %+v %+v", m, m.Error)
	}
	s.send(`{"type":"invoke","id":"b","input":"not an object"}`)
	if m := s.recv(); m.Type != TypeError || m.Error.Code != CodeBadInput {
		t.Errorf("bad input: %+v %+v", m, m.Error)
	}
	s.send(`{"type":"invoke","id":"l","input":{"message":"ok"}}`)
	if m := s.recv(); m.Type != TypeLog || m.ID != "l" || m.Level != "warn" || m.Text != "about to answer" {
		t.Errorf("log: %+v", m)
	}
	if m := s.recv(); m.Type != TypeResult || m.ID != "l" {
		t.Errorf("after the log: %+v", m)
	}
	s.send(`{"type":"unknown-type","id":"u"}`) // ignored
	s.send(`{"type":"shutdown","id":"s"}`)
	if err := s.wait(); err != nil {
		t.Errorf("Run after shutdown = %v", err)
	}
}

// TestConcurrentAndCancel checks that a long invocation does not hold up
// others (a new reader takes over) and that cancel reaches its context.
func TestConcurrentAndCancel(t *testing.T) {
	s := start(t, func(ctx context.Context, in contract.Input) (contract.Output, error) {
		if string(in.Message) == `"wait"` {
			<-ctx.Done()
			return contract.Output{}, ctx.Err()
		}
		return contract.Output{Noop: "quick"}, nil
	})
	s.init()
	s.send(`{"type":"invoke","id":"slow","input":{"message":"wait"}}`)
	s.send(`{"type":"invoke","id":"fast","input":{"message":"x"}}`)
	if m := s.recv(); m.ID != "fast" || m.Type != TypeResult {
		t.Fatalf("first answer %+v, want the fast invocation's result", m)
	}
	s.send(`{"type":"cancel","id":"slow"}`)
	if m := s.recv(); m.ID != "slow" || m.Type != TypeError || m.Error.Code != CodeCancelled {
		t.Fatalf("after cancel: %+v %+v, want error cancelled", m, m.Error)
	}
	// A deadline that passes ends the handler's context: code deadline.
	s.send(`{"type":"invoke","id":"late","input":{"message":"wait"},"deadline":` + jsonInt(time.Now().Add(50*time.Millisecond).UnixMilli()) + `}`)
	if m := s.recv(); m.ID != "late" || m.Type != TypeError || m.Error.Code != CodeDeadline {
		t.Fatalf("past its deadline: %+v %+v, want error deadline", m, m.Error)
	}
	s.send(`{"type":"cancel","id":"gone"}`) // unknown ids are ignored
	s.send(`{"type":"invoke","id":"after","input":{"message":"x"}}`)
	if m := s.recv(); m.ID != "after" {
		t.Fatalf("after: %+v", m)
	}
}

// TestShutdownDeadline checks that shutdown waits for invocations in flight
// and cancels them at its deadline.
func TestShutdownDeadline(t *testing.T) {
	running := make(chan struct{})
	s := start(t, func(ctx context.Context, in contract.Input) (contract.Output, error) {
		close(running)
		<-ctx.Done()
		return contract.Output{}, ctx.Err()
	})
	s.init()
	s.send(`{"type":"invoke","id":"1","input":{}}`)
	select {
	case <-running: // in flight: now shut down
	case <-time.After(5 * time.Second):
		t.Fatal("the invocation did not start in 5 s")
	}
	start := time.Now()
	s.send(`{"type":"shutdown","id":"s","by":` + jsonInt(time.Now().Add(200*time.Millisecond).UnixMilli()) + `}`)
	s.send(`{"type":"invoke","id":"late","input":{}}`)
	if m := s.recv(); m.ID != "late" || m.Error == nil || m.Error.Code != CodeUnavailable {
		t.Errorf("invoke after shutdown: %+v, want unavailable", m)
	}
	if m := s.recv(); m.ID != "1" || m.Error == nil || m.Error.Code != CodeCancelled {
		t.Errorf("in flight at shutdown: %+v, want cancelled", m)
	}
	if err := s.wait(); err != nil {
		t.Errorf("Run = %v", err)
	}
	if took := time.Since(start); took > time.Second || took < 50*time.Millisecond {
		t.Errorf("shutdown took %v, want about 100 ms (CancelBeforeBy before its deadline)", took)
	}
}

func TestProtocolErrors(t *testing.T) {
	for _, c := range []struct{ name, first, want string }{
		{"not init first", `{"type":"invoke","id":"1","input":{}}`, "first message must be an init"},
		{"wrong protocol", `{"type":"init","id":"i","protocol":2}`, "protocol 2"},
		{"not json", `hello`, "first message must be an init"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, echo)
			s.send(c.first)
			if c.name == "wrong protocol" {
				if m := s.recv(); m.Type != TypeError || m.Error.Code != CodeInit {
					t.Errorf("answer %+v, want an init error", m)
				}
			}
			if err := s.wait(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Run = %v, want an error containing %q", err, c.want)
			}
		})
	}
	// A line that is no message is answered bad_input, with the id when
	// it can be read, and the worker goes on.
	s := start(t, echo)
	s.init()
	for _, c := range []struct{ line, id string }{
		{`{"type":`, ""},
		{`[1,2]`, ""},
		{`{"type":"invoke","id":7,"input":{}}`, ""},
		{`{"type":"invoke","id":"n","input":null}`, "n"},
		{`{"type":"invoke","id":"s","input":"{}"}`, "s"},
		{`{"type":"invoke","id":"m"}`, "m"},
		{`{"type":"invoke","id":"cut","input":{"run_id":`, "cut"},
	} {
		s.send(c.line)
		if m := s.recv(); m.Type != TypeError || m.ID != c.id || m.Error.Code != CodeBadInput {
			t.Errorf("%s: answer %+v, want bad_input with id %q", c.line, m, c.id)
		}
	}
	s.send(`{"type":"invoke","id":"ok","input":{"message":1}}`)
	if m := s.recv(); m.Type != TypeResult || m.ID != "ok" {
		t.Errorf("after the broken lines: %+v, want a result", m)
	}
	// A module that is not there fails init.
	s = start(t, echo)
	s.send(`{"type":"init","id":"i","protocol":1,"modules":[{"id":"main","entry":"no-such-file"}]}`)
	if m := s.recv(); m.Type != TypeError || m.Error.Code != CodeInit || !strings.Contains(m.Error.Message, "no-such-file") {
		t.Errorf("init of a missing module: %+v, want an init error naming it", m)
	}
	if err := s.wait(); err == nil {
		t.Error("Run after an init error = nil, want an error")
	}
}

func TestParseInvoke(t *testing.T) {
	for _, c := range []struct {
		line     string
		ok       bool
		id       string
		input    string
		deadline int64
	}{
		{`{"type":"invoke","id":"7","input":{"a":1}}`, true, "7", `{"a":1}`, 0},
		{`{"type":"invoke","id":"7","input":{"a":1},"deadline":123}`, true, "7", `{"a":1}`, 123},
		{`{"type":"invoke","id":"7","input":{"a":1,"deadline":123}}`, true, "7", `{"a":1,"deadline":123}`, 0},
		{`{"type":"invoke","id":"7","input":5}`, true, "7", `5`, 0},
		{`{"type":"invoke","id":"a\"b","input":{}}`, false, "", "", 0},
		{`{"type":"invoke","id":"7","module":"m","input":{}}`, false, "", "", 0},
		{`{"type":"invoke","id":"7","input":{},"extra":1}`, false, "", "", 0},
		{`{"type":"invoke","id":"7","input":{"a":}`, false, "", "", 0},
		{`{"type":"result","id":"7"}`, false, "", "", 0},
	} {
		var m Message
		ok := parseInvoke([]byte(c.line), &m)
		if ok != c.ok || ok && (m.ID != c.id || string(m.Input) != c.input || m.Deadline != c.deadline || m.Type != TypeInvoke) {
			t.Errorf("parseInvoke(%s) = %v %+v, want %v id %q input %s deadline %d", c.line, ok, m, c.ok, c.id, c.input, c.deadline)
		}
	}
}
