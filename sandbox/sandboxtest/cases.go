package sandboxtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// T is what a case needs of whoever runs it: *testing.T is one (Run), the
// report Certify prints for `andromeda conformance` another. Fatalf ends
// the case (on the goroutine that runs it); Logf is a note, not a failure.
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

var _ T = (*testing.T)(nil)

// suite is the state one mode's cases share.
type suite struct {
	h      Harness
	d      sandbox.Driver
	mode   sandbox.Mode
	spec   sandbox.Spec
	dep    sandbox.Deployment
	canary string
	runs   atomic.Int64
}

// Where a case runs: in the driver suite (Run), in the kit (Certify), or
// both.
const (
	inBoth  = iota
	inSuite // Run only: the driver's isolation, which every driver answers for
	inKit   // Certify only: the runtime protocol, with operations only a protocol runtime has (wait, log)
)

// kitCase is one case of the suite.
type kitCase struct {
	name  string
	where int
	run   func(t T, s *suite)
}

// cases run in order in each mode; each name is a subtest and a Harness.Skip
// key. The kit cases are the protocol's, which a language runtime answers
// for; Certify runs those only, the others test the driver's isolation.
var cases = []kitCase{
	{"echo", inBoth, testEcho},
	{"input", inBoth, testInput},
	{"large-input", inBoth, testLargeInput},
	{"unicode", inBoth, testUnicode},
	{"noop", inBoth, testNoop},
	{"noop-without-reason", inBoth, testNoopWithoutReason},
	// Before the cases that may restart a worker: cancel-wait counts them.
	{"log", inKit, testLog},
	{"cancel-wait", inKit, testCancelWait},
	{"panic", inBoth, testPanic},
	{"exit", inBoth, testExit},
	{"concurrent", inBoth, testConcurrent},
	{"cancel", inSuite, testCancel},
	// After the cases that need every worker: a worker that ignores its
	// cancel holds its slot until the driver kills it.
	{"spin", inBoth, testSpin},
	{"sleep", inSuite, testSleep},
	{"balloon", inSuite, testBalloon},
	{"oom", inKit, testOOM},
	{"no-filesystem", inSuite, testNoFilesystem},
	{"no-network", inSuite, testNoNetwork},
	{"no-env-leak", inSuite, testNoEnvLeak},
	{"usage", inSuite, testUsage},
	{"stop", inBoth, testStop},
	{"stop-in-flight", inSuite, testStopInFlight},
}

// deploy deploys the suite's guest and stops it when the test ends.
func (s *suite) deploy(t T) sandbox.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dep, err := s.d.Deploy(ctx, s.spec)
	if err != nil {
		t.Fatalf("Deploy(%s, mode %s) = %v", s.spec.Entry, s.mode, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := dep.Stop(ctx); err != nil {
			t.Errorf("Stop() = %v", err)
		}
	})
	return dep
}

// input is the contract Input for one guest operation.
func (s *suite) input(do string, args map[string]any) contract.Input {
	msg := map[string]any{"do": do}
	for k, v := range args {
		msg[k] = v
	}
	raw, err := json.Marshal(msg)
	if err != nil {
		panic(err)
	}
	return contract.Input{
		RunID:   fmt.Sprintf("run-%s-%d", s.mode, s.runs.Add(1)),
		Service: s.spec.Service,
		Trigger: contract.Trigger{Kind: "manual"},
		Message: raw,
	}
}

// call invokes the guest through sandbox.Call, as the node does.
func (s *suite) call(t T, dep sandbox.Deployment, in contract.Input, timeout time.Duration) sandbox.Result {
	t.Helper()
	if timeout == 0 {
		timeout = s.spec.Limits.Timeout
	}
	r, err := sandbox.Call(context.Background(), dep, in, timeout)
	if err != nil {
		t.Fatalf("Call(%s) = %v, want no runner error", in.Message, err)
	}
	return r
}

// do runs one operation on the suite's deployment with the default timeout.
func (s *suite) do(t T, do string, args map[string]any) sandbox.Result {
	t.Helper()
	return s.call(t, s.dep, s.input(do, args), 0)
}

// want fails t unless r has outcome o.
func want(t T, r sandbox.Result, o sandbox.Outcome) {
	t.Helper()
	if r.Outcome != o {
		t.Fatalf("outcome = %s (error %q, raw output %.200q), want %s", r.Outcome, r.Error, r.Raw, o)
	}
}

// echo checks that data comes back from the echo operation unchanged.
func (s *suite) echo(t T, dep sandbox.Deployment, data any) {
	t.Helper()
	raw, ok := data.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			t.Fatalf("%v", err)
		}
	}
	in := s.input("echo", nil)
	in.Message = json.RawMessage(fmt.Sprintf(`{"do":"echo","data":%s}`, raw))
	r := s.call(t, dep, in, 0)
	want(t, r, sandbox.OK)
	if len(r.Output.Emit) != 1 || r.Output.Emit[0].Topic != "echo" {
		t.Fatalf("output = %s, want one emit to topic echo", r.Raw)
	}
	if !jsonEqual(r.Output.Emit[0].Message, raw) {
		t.Fatalf("echo of %.200s returned %.200s", raw, r.Output.Emit[0].Message)
	}
}

// stillWorks checks that the deployment serves an echo after a failure.
func (s *suite) stillWorks(t T) {
	t.Helper()
	s.echo(t, s.dep, map[string]any{"after": "failure"})
}

// jsonEqual compares two JSON texts as decoded values, so that escaping,
// spacing and number spelling do not matter (guests in other languages
// re-encode what they echo) while every string must match byte for byte.
func jsonEqual(a, b []byte) bool {
	va, errA := decode(a)
	vb, errB := decode(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decode(b []byte) (any, error) {
	var v any
	err := json.Unmarshal(b, &v)
	return v, err
}

func testEcho(t T, s *suite) {
	for _, data := range []any{
		map[string]any{"a": 1, "b": []any{true, nil, "x", 0.25, -7}, "c": map[string]any{}},
		"plain string",
		-42,
		[]any{},
		json.RawMessage(`{"deep":[[[[[[[[[[{"k":[1,2,3]}]]]]]]]]]]}`),
	} {
		s.echo(t, s.dep, data)
	}
}

func testInput(t T, s *suite) {
	in := s.input("input", nil)
	in.Trigger = contract.Trigger{Kind: "event", Topic: "conformance.topic", At: "2025-01-02T03:04:05Z"}
	in.State = map[string]json.RawMessage{"counter": json.RawMessage(`7`)}
	in.Config = map[string]any{"threshold": "0.02"}
	r := s.call(t, s.dep, in, 0)
	want(t, r, sandbox.OK)
	if len(r.Output.Emit) != 1 {
		t.Fatalf("output = %s, want one emit", r.Raw)
	}
	var got contract.Input
	if err := json.Unmarshal(r.Output.Emit[0].Message, &got); err != nil {
		t.Fatalf("input emitted by the guest: %v", err)
	}
	if got.RunID != in.RunID || got.Service != in.Service || got.Trigger != in.Trigger {
		t.Errorf("guest saw run %q service %q trigger %+v, want %q %q %+v", got.RunID, got.Service, got.Trigger, in.RunID, in.Service, in.Trigger)
	}
	if !jsonEqual(got.State["counter"], in.State["counter"]) || got.Config["threshold"] != "0.02" {
		t.Errorf("guest saw state %s and config %v, want counter 7 and threshold 0.02", got.State, got.Config)
	}
	if !jsonEqual(got.Message, in.Message) {
		t.Errorf("guest saw message %s, want %s", got.Message, in.Message)
	}
}

func testLargeInput(t T, s *suite) {
	const size = 1 << 20
	pattern := "andromeda-Ω-"
	data := strings.Repeat(pattern, size/len(pattern)+1)[:size-len(pattern)]
	s.echo(t, s.dep, data)
}

func testUnicode(t T, s *suite) {
	s.echo(t, s.dep, []string{
		"héllo wörld",
		"日本語のテキスト",
		"emoji 🚀🎉 family 👩‍👩‍👧 flag 🇺🇦",
		"nul \x00 inside",
		"controls \t\n\r\x1f\x7f",
		"separators \u2028\u2029",
		`quotes " and \ backslash`,
		"<html> & 'escapes'",
		"\uFEFF byte order mark",
	})
	// Escapes as they arrive on the wire, including a surrogate pair.
	s.echo(t, s.dep, json.RawMessage(`["\u0000", "\ud83d\ude00", "\u00e9\u65e5", "\/slash", "\b\f"]`))
}

func testNoop(t T, s *suite) {
	const reason = "nothing to do: conformance"
	r := s.do(t, "noop", map[string]any{"reason": reason})
	want(t, r, sandbox.Noop)
	if r.Output.Noop != reason {
		t.Errorf("noop reason = %q, want %q", r.Output.Noop, reason)
	}
}

func testNoopWithoutReason(t T, s *suite) {
	for _, c := range []struct {
		do   string
		args map[string]any
	}{{"nothing", nil}, {"noop", map[string]any{"reason": ""}}} {
		r := s.do(t, c.do, c.args)
		want(t, r, sandbox.Error)
		if !strings.Contains(r.Error, contract.ErrNoReason.Error()) {
			t.Errorf("%s: error = %q, want it to state the rule %q", c.do, r.Error, contract.ErrNoReason)
		}
	}
}

func testPanic(t T, s *suite) {
	before := s.started()
	r := s.do(t, "panic", nil)
	want(t, r, sandbox.Crashed)
	if !strings.Contains(r.Error, "conformance panic") {
		t.Errorf("detail = %q, want it to carry the panic message %q", r.Error, "conformance panic")
	}
	s.stillWorks(t)
	if s.mode == sandbox.ModeServer && s.started() != before {
		t.Logf("the worker died on a thrown error; a shim should report it with an error message and live on")
	}
}

func testExit(t T, s *suite) {
	r := s.do(t, "exit", map[string]any{"code": 3})
	want(t, r, sandbox.Crashed)
	if !strings.Contains(r.Error, "3") {
		t.Errorf("detail = %q, want it to carry the exit status 3", r.Error)
	}
	s.stillWorks(t)
}

// timesOut checks that op ends as a timeout, promptly.
func (s *suite) timesOut(t T, op string) {
	start := time.Now()
	r := s.call(t, s.dep, s.input(op, nil), s.h.Timeout)
	took := time.Since(start)
	want(t, r, sandbox.Timeout)
	if limit := s.h.Timeout + s.h.Slack; took > limit {
		t.Errorf("%s with timeout %v returned after %v, want at most %v", op, s.h.Timeout, took, limit)
	}
	s.stillWorks(t)
}

func testSpin(t T, s *suite)  { s.timesOut(t, "spin") }
func testSleep(t T, s *suite) { s.timesOut(t, "sleep") }

func testBalloon(t T, s *suite) {
	r := s.do(t, "balloon", nil)
	want(t, r, sandbox.OOM)
	if r.Usage.PeakMemory > s.spec.Limits.Memory {
		t.Errorf("peak memory %d bytes, over the limit of %d", r.Usage.PeakMemory, s.spec.Limits.Memory)
	}
	s.stillWorks(t)
}

// sameSize reports whether a guest's "readfile: ok: N bytes" names the
// size of the host's file at path.
func sameSize(noop, path string) bool {
	fi, err := os.Stat(path)
	return err == nil && noop == fmt.Sprintf("readfile: ok: %d bytes", fi.Size())
}

func testNoFilesystem(t T, s *suite) {
	dir, err := os.MkdirTemp("", "sandboxtest-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	secret := filepath.Join(dir, "secret.txt")
	if err := os.WriteFile(secret, []byte("conformance secret"), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	paths := []string{secret}
	if _, err := os.Stat("/etc/passwd"); err == nil {
		paths = append(paths, "/etc/passwd")
	}
	for _, p := range paths {
		r := s.do(t, "readfile", map[string]any{"path": p})
		want(t, r, sandbox.Noop)
		if strings.HasPrefix(r.Output.Noop, "readfile: error") || s.h.OwnRoot && p != secret && !sameSize(r.Output.Noop, p) {
			continue
		}
		t.Errorf("readfile %s: guest reported %q, want the read to fail", p, r.Output.Noop)
	}
	target := filepath.Join(dir, "written-by-guest.txt")
	r := s.do(t, "writefile", map[string]any{"path": target})
	want(t, r, sandbox.Noop)
	if !strings.HasPrefix(r.Output.Noop, "writefile: error") {
		t.Errorf("writefile %s: guest reported %q, want the write to fail", target, r.Output.Noop)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after writefile, stat %s = %v, want the file not to exist", target, err)
	}
}

func testNoNetwork(t T, s *suite) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer ln.Close()
	r := s.do(t, "dial", map[string]any{"addr": ln.Addr().String()})
	want(t, r, sandbox.Noop)
	if !strings.HasPrefix(r.Output.Noop, "dial: error") {
		t.Errorf("dial %s: guest reported %q, want the dial to fail", ln.Addr(), r.Output.Noop)
	}
	// A connection the guest made is in the accept queue by now.
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Errorf("the listener at %s accepted a connection from the guest", ln.Addr())
	}
}

func testNoEnvLeak(t T, s *suite) {
	r := s.do(t, "env", nil)
	want(t, r, sandbox.OK)
	var got struct {
		Env  []string `json:"env"`
		Args []string `json:"args"`
	}
	if len(r.Output.Emit) != 1 || json.Unmarshal(r.Output.Emit[0].Message, &got) != nil {
		t.Fatalf("output = %s, want one emit with env and args", r.Raw)
	}
	host := os.Environ()
	for _, kv := range got.Env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.Contains(kv, s.canary) {
			t.Errorf("the guest sees the host's canary: %q", kv)
		} else if slices.Contains(host, kv) && !slices.Contains(s.h.AllowEnv, name) {
			t.Errorf("the guest sees the host's %s", kv)
		}
	}
	for _, a := range got.Args {
		if strings.Contains(a, s.canary) {
			t.Errorf("the guest sees the host's canary in its arguments: %q", a)
		}
	}
}

func testConcurrent(t T, s *suite) {
	callers, each := 8, 4
	if s.mode == sandbox.ModeCommand {
		each = 1 // a worker per call: 8 at once say as much as 32
	}
	var wg sync.WaitGroup
	errs := make(chan string, callers*each)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				data := fmt.Sprintf("caller %d call %d %s", c, i, strings.Repeat("x", c*100+i))
				in := s.input("echo", map[string]any{"data": data})
				r, err := sandbox.Call(context.Background(), s.dep, in, s.spec.Limits.Timeout)
				switch {
				case err != nil:
					errs <- fmt.Sprintf("caller %d: %v", c, err)
				case r.Outcome != sandbox.OK || len(r.Output.Emit) != 1:
					errs <- fmt.Sprintf("caller %d: %s %s", c, r.Outcome, r.Error)
				case !jsonEqual(r.Output.Emit[0].Message, mustJSON(data)):
					errs <- fmt.Sprintf("caller %d: got %.80s, want %.80s", c, r.Output.Emit[0].Message, data)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("%s", e)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func testCancel(t T, s *suite) {
	before := s.started()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := sandbox.Call(ctx, s.dep, s.input("sleep", nil), s.spec.Limits.Timeout); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call cancelled while it runs returned %v, want %v", err, context.Canceled)
	}
	if s.h.Started != nil {
		time.Sleep(s.h.CancelGrace + 100*time.Millisecond) // past the kill of a worker that ignored the cancel
	}
	s.stillWorks(t)
	if s.mode == sandbox.ModeServer && s.started() != before {
		t.Logf("the worker was killed: it did not end the invocation after its cancel message (acceptable for a runtime that cannot interrupt a handler)")
	}
}

// testCancelWait cancels a call whose guest waits in a way its runtime
// can interrupt (the wait operation): the runtime must end the invocation
// (answer cancelled) within the driver's grace, so that in server mode the
// worker lives on. A runtime that cannot interrupt such a wait has its
// worker killed, which fails the case.
func testCancelWait(t T, s *suite) {
	before := s.started()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	if _, err := sandbox.Call(ctx, s.dep, s.input("wait", nil), s.spec.Limits.Timeout); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call cancelled while it waits returned %v, want %v", err, context.Canceled)
	}
	if s.mode == sandbox.ModeServer && s.h.Started != nil {
		// A worker that ignores the cancel is killed at the end of the
		// grace and replaced: wait well past it for the replacement.
		deadline := time.Now().Add(s.h.CancelGrace + 2*time.Second)
		for s.started() == before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if after := s.started(); after != before {
			t.Errorf("the worker was killed (%d workers started before the call, %d after): it did not answer the cancel of a wait within the driver's grace of %v", before, after, s.h.CancelGrace)
		}
	}
	s.stillWorks(t)
}

// testLog checks that the log messages a guest sends during an invocation
// reach that run's log (sandbox.WithRunLog), in order, before its answer.
func testLog(t T, s *suite) {
	var mu sync.Mutex
	var lines []string
	ctx := sandbox.WithRunLog(context.Background(), func(l string) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	})
	text := fmt.Sprintf("conformance log line %d ✓", s.runs.Load())
	r, err := sandbox.Call(ctx, s.dep, s.input("log", map[string]any{"level": "warn", "message": text}), s.spec.Limits.Timeout)
	if err != nil {
		t.Fatalf("Call(log) = %v", err)
	}
	want(t, r, sandbox.Noop)
	if r.Output.Noop != "logged" {
		t.Errorf("log: noop %q, want %q", r.Output.Noop, "logged")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, text) && strings.Contains(l, "warn") }) {
		t.Errorf("the run's log has %q, want a warn line with %q: the guest's log message did not reach its run", lines, text)
	}
}

// testOOM checks that running out of memory is reported as oom: one
// allocation no host gives (alloc of 2^40 bytes, each page written), which
// the runtime catches and answers with the error code oom, or which kills
// it with its out-of-memory message, or which the memory limit stops. (The
// driver suite's balloon covers the memory limit itself.)
func testOOM(t T, s *suite) {
	r := s.do(t, "alloc", map[string]any{"size": int64(1) << 40})
	want(t, r, sandbox.OOM)
	s.stillWorks(t)
}

// started is how many workers the deployment has started, or -1.
func (s *suite) started() int64 {
	if s.h.Started == nil {
		return -1
	}
	return s.h.Started(s.dep)
}

func testUsage(t T, s *suite) {
	r := s.do(t, "echo", map[string]any{"data": "usage"})
	want(t, r, sandbox.OK)
	if r.Usage.Wall <= 0 {
		t.Errorf("usage.wall = %v, want > 0", r.Usage.Wall)
	}
	if r.Usage.CPU < 0 || r.Usage.PeakMemory < 0 {
		t.Errorf("usage = %+v, want no negative figures", r.Usage)
	}
}

func testStop(t T, s *suite) {
	dep := s.deploy(t)
	s.echo(t, dep, "before stop")
	const deadline = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	if err := dep.Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	// An idle guest must exit when asked to, not be killed at the deadline:
	// a stop within half of it says so, with room for an engine that is
	// slow to remove a container on a loaded machine.
	if took := time.Since(start); took > deadline/2 {
		t.Errorf("an idle deployment took %v to stop with a %v deadline", took, deadline)
	}
	if err := dep.Stop(ctx); err != nil {
		t.Fatalf("second Stop() = %v, want nil", err)
	}
	if _, err := dep.Invoke(ctx, mustJSON(s.input("echo", map[string]any{"data": 1}))); !errors.Is(err, sandbox.ErrStopped) {
		t.Fatalf("Invoke after Stop = %v, want %v", err, sandbox.ErrStopped)
	}
	if _, err := sandbox.Call(ctx, dep, s.input("echo", map[string]any{"data": 1}), time.Second); !errors.Is(err, sandbox.ErrStopped) {
		t.Fatalf("Call after Stop = %v, want %v", err, sandbox.ErrStopped)
	}
}

func testStopInFlight(t T, s *suite) {
	dep := s.deploy(t)
	s.echo(t, dep, "warm")
	type result struct {
		r   sandbox.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := sandbox.Call(context.Background(), dep, s.input("spin", nil), time.Minute)
		done <- result{r, err}
	}()
	time.Sleep(200 * time.Millisecond) // let the guest start spinning
	const grace = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	if err := dep.Stop(ctx); err != nil {
		t.Errorf("Stop() = %v, want nil", err)
	}
	// A driver may give its kills past the grace a few seconds (the docker
	// driver gives a busy engine 5 s); Stop must still come back.
	if took, limit := time.Since(start), grace+10*time.Second; took > limit {
		t.Errorf("Stop with a %v grace period took %v", grace, took)
	}
	select {
	case res := <-done:
		if res.err == nil && (res.r.Outcome == sandbox.OK || res.r.Outcome == sandbox.Noop) {
			t.Errorf("the spinning invocation ended %s, want it stopped", res.r.Outcome)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the spinning invocation still runs 5 s after Stop returned")
	}
}
