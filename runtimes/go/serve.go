package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
)

// Handler decides one invocation. ctx is cancelled when the runner cancels
// the invocation (the caller gave up, or the deadline passed) or the worker
// shuts down; a handler that returns soon after keeps its worker alive, one
// that ignores ctx gets the worker killed. A returned error ends the run as
// crashed with the error's text; so does a panic, which Serve recovers.
// Handlers run concurrently, each invocation on its own goroutine.
type Handler func(ctx context.Context, in contract.Input) (contract.Output, error)

// Func adapts a function in the shape of the wasm SDK's handler (no context,
// no error) to a Handler.
func Func(f func(in contract.Input) contract.Output) Handler {
	return func(_ context.Context, in contract.Input) (contract.Output, error) { return f(in), nil }
}

// Serve runs h as a worker on the process's standard input and output and
// exits the process: status 0 after a shutdown message or the end of
// standard input, 1 on a protocol error (the reason goes to standard
// error). It does not return. Before serving, it moves the protocol to a
// private copy of standard output and points file descriptor 1 at standard
// error, so that whatever the service prints (fmt.Println) is logged and
// cannot corrupt the protocol.
func Serve(h Handler) { ServeWith(h, Options{}) }

// Options are what a worker may answer besides invocations: a self-test
// and, for a runtime registered with a node by descriptor, properties for
// the node's offer. A nil field is not offered (ready's accepts leaves its
// request type out).
type Options struct {
	// Load, when set, is given the init message's modules before the
	// worker answers ready: a runtime that interprets its services' files
	// (one registered by descriptor) loads them here. An error is the
	// init error (the module did not load) and the worker exits.
	Load func(modules []Module) error
	// Test is the service's self-test (a test message): a nil error
	// passes, an error fails the deploy with its text. ctx ends at the
	// service's timeout.
	Test func(ctx context.Context) error
	// Offer returns the properties the runtime adds to the node's offer
	// (an offer message), as in Golem's runtime offer.
	Offer func(ctx context.Context) (map[string]any, error)
}

// ServeWith is Serve with o's answers to test and offer messages.
func ServeWith(h Handler, o Options) {
	in, out := stdio()
	if err := RunWith(context.Background(), h, o, in, out); err != nil {
		fmt.Fprintf(os.Stderr, "andromeda worker: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Run serves the protocol on r and w until a shutdown message, the end of r
// or ctx is done, then waits for the invocations in flight (until
// CancelBeforeBy before the shutdown's deadline, when their contexts are
// cancelled) and returns. After a shutdown it reads on, answering every
// invoke unavailable, until it returns. A line that is not a message is
// answered bad_input. It returns an error for an init that does not come
// first or names a module that is not there, a line longer than max_line,
// or a failed write; it never closes w. Run is what Serve calls; tests
// call it with pipes.
func Run(ctx context.Context, h Handler, r io.Reader, w io.Writer) error {
	return RunWith(ctx, h, Options{}, r, w)
}

// RunWith is Run with o's answers to test and offer messages.
func RunWith(ctx context.Context, h Handler, o Options, r io.Reader, w io.Writer) error {
	s := &server{h: h, o: o, w: w, calls: map[string]context.CancelFunc{}, maxLine: DefaultMaxLine}
	ctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	br := bufio.NewReaderSize(r, 64<<10)

	line, err := readLine(br, s.maxLine)
	if err != nil {
		return fmt.Errorf("read init: %w", err)
	}
	var init Message
	if err := json.Unmarshal(line, &init); err != nil || init.Type != TypeInit {
		return fmt.Errorf("read init: first message must be an init message, got %.100q", line)
	}
	if init.MaxLine > 0 {
		s.maxLine = init.MaxLine
	}
	concurrency := init.MaxInFlight
	if concurrency <= 0 {
		concurrency = 64
	}
	if init.Protocol != Version {
		s.send(&Message{Type: TypeError, ID: init.ID, Error: &Error{Code: CodeInit, Message: fmt.Sprintf("protocol %d is not supported: this worker speaks %d", init.Protocol, Version)}})
		return fmt.Errorf("init: protocol %d, want %d", init.Protocol, Version)
	}
	if o.Load != nil {
		if err := o.Load(init.Modules); err != nil {
			s.send(&Message{Type: TypeError, ID: init.ID, Error: &Error{Code: CodeInit, Message: err.Error()}})
			return fmt.Errorf("init: %w", err)
		}
	} else {
		// The worker is its own module: it only checks that what init
		// names is there, as a shim that loads the module would.
		for _, m := range init.Modules {
			if m.Entry == "" {
				continue
			}
			if _, err := os.Stat(m.Entry); err != nil {
				s.send(&Message{Type: TypeError, ID: init.ID, Error: &Error{Code: CodeInit, Message: fmt.Sprintf("module %s: %v", m.ID, err)}})
				return fmt.Errorf("init: module %s: %w", m.ID, err)
			}
		}
	}
	if err := s.send(&Message{Type: TypeReady, ID: init.ID, Protocol: Version, Runtime: "go", Version: runtime.Version(), Concurrency: concurrency, Accepts: o.accepts()}); err != nil {
		return err
	}

	s.br = br
	s.readDone = make(chan readEnd, 2) // a shutdown, then the end of input
	go s.readLoop(ctx)
	end := <-s.readDone
	by, readErr := end.by, end.err

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var timeout <-chan time.Time
	if !by.IsZero() {
		// Cancel what still runs shortly before by, so that the handlers
		// can return (and their answers go out) before the runner kills
		// the worker.
		timeout = time.After(max(time.Until(by)-CancelBeforeBy, 0))
	}
	select {
	case <-done:
	case <-ctx.Done():
		<-done
	case <-timeout:
		cancelAll()
		<-done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if readErr != nil {
		return readErr
	}
	return s.writeErr
}

// server is one Run's state.
type server struct {
	h       Handler
	o       Options
	maxLine int
	wg      sync.WaitGroup

	br       *bufio.Reader // read by one readLoop at a time
	readDone chan readEnd  // the reading readLoop says why serving ends
	closing  atomic.Bool   // after shutdown or the end of input: refuse invocations

	mu       sync.Mutex
	calls    map[string]context.CancelFunc
	w        io.Writer
	buf      bytes.Buffer
	writeErr error
}

// invocation is the context key under which Log finds the invocation.
type invocation struct{}

type callInfo struct {
	s  *server
	id string
}

// readEnd is why Run stops serving: a shutdown (with its deadline), the
// end of input, or an error.
type readEnd struct {
	by  time.Time
	err error
}

// CancelBeforeBy is how long before a shutdown's by a worker cancels the
// invocations still running (the protocol's "shortly before").
const CancelBeforeBy = 100 * time.Millisecond

// reliefAfter is how long an invocation runs on the reading goroutine
// before another goroutine takes over reading (so that cancel messages and
// other invocations are read while it runs).
const reliefAfter = 200 * time.Microsecond

// readLoop reads and dispatches messages until the input ends, a shutdown
// arrives (either sends on s.readDone) or an invocation it runs takes
// longer than reliefAfter, in which case a new readLoop has taken over and
// this one returns once the invocation is done. Running short invocations
// on the reading goroutine saves a goroutine hand-off and the wake-up of
// another thread per invocation: most of a warm round trip.
func (s *server) readLoop(ctx context.Context) {
	for {
		line, err := readLine(s.br, s.maxLine)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			} else {
				err = fmt.Errorf("read: %w", err)
			}
			if !s.closing.Swap(true) || err != nil {
				s.readDone <- readEnd{err: err}
			}
			return
		}
		var m Message
		if !parseInvoke(line, &m) {
			if err := json.Unmarshal(line, &m); err != nil {
				// Not a message: answer it, with the id when one can be
				// read, and go on.
				_ = s.send(&Message{Type: TypeError, ID: lineID(line), Error: &Error{Code: CodeBadInput, Message: fmt.Sprintf("decode message: %v: %.100q", err, line)}})
				continue
			}
		}
		switch m.Type {
		case TypeShutdown:
			if s.closing.Swap(true) {
				continue
			}
			var by time.Time
			if m.By > 0 {
				by = time.UnixMilli(m.By)
			}
			// Read on until the end of input (or the exit): an invoke
			// after shutdown is answered unavailable.
			s.readDone <- readEnd{by: by}
		case TypeInvoke:
			if s.closing.Load() {
				_ = s.send(&Message{Type: TypeError, ID: m.ID, Error: &Error{Code: CodeUnavailable, Message: "the worker is shutting down"}})
				continue
			}
			if !s.invoke(ctx, m) {
				return // another goroutine reads now
			}
		case TypeTest, TypeOffer:
			s.wg.Add(1)
			go s.request(ctx, m)
		case TypeCancel:
			s.mu.Lock()
			cancel := s.calls[m.ID]
			s.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		}
		// Other types are ignored, as the protocol asks.
	}
}

// invoke runs one invocation on the calling (reading) goroutine; if it is
// still running after reliefAfter, a new readLoop takes over reading and
// invoke reports false: the caller must stop reading.
func (s *server) invoke(base context.Context, m Message) (keepReading bool) {
	var ctx context.Context
	var cancel context.CancelFunc
	if m.Deadline > 0 {
		ctx, cancel = context.WithDeadline(base, time.UnixMilli(m.Deadline))
	} else {
		ctx, cancel = context.WithCancel(base)
	}
	ctx = context.WithValue(ctx, invocation{}, callInfo{s, m.ID})
	s.mu.Lock()
	s.calls[m.ID] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	defer s.wg.Done()
	var handed atomic.Bool
	relief := time.AfterFunc(reliefAfter, func() {
		if handed.CompareAndSwap(false, true) {
			go s.readLoop(base)
		}
	})
	reply := s.call(ctx, m)
	relief.Stop()
	s.mu.Lock()
	delete(s.calls, m.ID)
	s.mu.Unlock()
	cancel()
	_ = s.send(reply)
	return handed.CompareAndSwap(false, true)
}

// call runs the handler for m and returns the message that ends it.
func (s *server) call(ctx context.Context, m Message) (reply *Message) {
	defer func() {
		if r := recover(); r != nil {
			reply = &Message{Type: TypeError, ID: m.ID, Error: &Error{Code: CodePanic, Message: fmt.Sprintf("panic: %v", r), Stack: string(debug.Stack())}}
		}
	}()
	var in contract.Input
	if len(bytes.TrimLeft(m.Input, " \t\r\n")) == 0 || bytes.TrimLeft(m.Input, " \t\r\n")[0] != '{' {
		return &Message{Type: TypeError, ID: m.ID, Error: &Error{Code: CodeBadInput, Message: fmt.Sprintf("decode input: %.100s is not a JSON object", m.Input)}}
	}
	if err := json.Unmarshal(m.Input, &in); err != nil {
		return &Message{Type: TypeError, ID: m.ID, Error: &Error{Code: CodeBadInput, Message: "decode input: " + err.Error()}}
	}
	out, err := s.h(ctx, in)
	if err != nil {
		code := CodeError
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, ctx.Err()):
			code = CodeDeadline
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			code = CodeCancelled
		}
		return &Message{Type: TypeError, ID: m.ID, Error: &Error{Code: code, Message: err.Error()}}
	}
	raw, err := marshal(out)
	if err != nil {
		return &Message{Type: TypeError, ID: m.ID, Error: &Error{Code: CodeError, Message: "encode output: " + err.Error()}}
	}
	return &Message{Type: TypeResult, ID: m.ID, Output: raw}
}

// send writes m as one line. Safe for concurrent use; the first write error
// is kept and later sends are dropped.
func (s *server) send(m *Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	s.buf.Reset()
	if m.Type == TypeResult {
		// The hot path, without reflection over Message.
		s.buf.WriteString(`{"type":"result","id":`)
		s.buf.WriteString(strconv.Quote(m.ID))
		s.buf.WriteString(`,"output":`)
		s.buf.Write(m.Output)
		s.buf.WriteString("}\n")
	} else {
		enc := json.NewEncoder(&s.buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(m); err != nil {
			s.writeErr = fmt.Errorf("encode %s message: %w", m.Type, err)
			return s.writeErr
		}
	}
	if s.buf.Len() > s.maxLine {
		s.buf.Reset()
		fmt.Fprintf(&s.buf, `{"type":"error","id":%s,"error":{"code":"error","message":"output of %d bytes exceeds the line limit of %d bytes"}}`+"\n", strconv.Quote(m.ID), len(m.Output), s.maxLine)
	}
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		s.writeErr = fmt.Errorf("write %s message: %w", m.Type, err)
	}
	if s.buf.Cap() > 1<<20 {
		s.buf = bytes.Buffer{} // do not keep a large output's buffer
	}
	return s.writeErr
}

// Log sends a log line for the invocation ctx belongs to (the ctx a Handler
// received); level is "debug", "info", "warn" or "error". Outside an
// invocation, Log writes the line to standard error. Safe for concurrent use.
func Log(ctx context.Context, level, msg string) {
	ci, ok := ctx.Value(invocation{}).(callInfo)
	if !ok {
		fmt.Fprintln(os.Stderr, msg)
		return
	}
	_ = ci.s.send(&Message{Type: TypeLog, ID: ci.id, Level: level, Text: msg})
}

// Usage reports amount more of counter name for the invocation ctx belongs
// to (the ctx a Handler received): the runner sums the reports of each
// name over the run, and they land on the run's usage and in its signed
// usage record (docs/runtime-protocol.md, "usage"). A name is 1 to 64
// characters of [a-z0-9_.-] starting with a letter, an amount a finite
// number ≥ 0, and a run has at most 32 names; the runner drops and counts
// other reports. Outside an invocation, or for an amount JSON cannot
// encode (NaN, ±Inf), Usage does nothing. Safe for concurrent use.
func Usage(ctx context.Context, name string, amount float64) {
	ci, ok := ctx.Value(invocation{}).(callInfo)
	if !ok || math.IsNaN(amount) || math.IsInf(amount, 0) {
		return
	}
	counters, err := json.Marshal(map[string]float64{name: amount})
	if err != nil {
		return
	}
	_ = ci.s.send(&Message{Type: TypeUsage, ID: ci.id, Counters: counters})
}

// marshal encodes out without escaping HTML characters.
func marshal(out contract.Output) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// invokePrefix is how the process driver starts an invoke line; a line that
// starts with it is decoded without reflection.
var invokePrefix = []byte(`{"type":"invoke","id":"`)

// parseInvoke decodes an invoke message in the driver's own spelling,
// {"type":"invoke","id":"<id>","input":<input>[,"deadline":<ms>]}, into m
// and reports whether it could. The input is not validated here: decoding
// it is the invocation's first step, which reports bad input. Any other
// spelling goes through encoding/json.
func parseInvoke(line []byte, m *Message) bool {
	rest, ok := bytes.CutPrefix(line, invokePrefix)
	if !ok {
		return false
	}
	q := bytes.IndexByte(rest, '"')
	if q <= 0 || bytes.IndexByte(rest[:q], '\\') >= 0 {
		return false
	}
	id := rest[:q]
	input, ok := bytes.CutPrefix(rest[q+1:], []byte(`,"input":`))
	if !ok || len(input) < 2 || input[len(input)-1] != '}' {
		return false
	}
	input = input[:len(input)-1]
	var deadline int64
	if i := bytes.LastIndex(input, []byte(`,"deadline":`)); i > 0 {
		digits := input[i+len(`,"deadline":`):]
		if n, err := strconv.ParseInt(string(digits), 10, 64); err == nil && n > 0 {
			deadline, input = n, input[:i]
		}
	}
	if !json.Valid(input) {
		return false // more fields after the input, or a broken line: decode it in full
	}
	m.Type, m.ID, m.Input, m.Deadline = TypeInvoke, string(id), append(json.RawMessage(nil), input...), deadline
	return true
}

// lineID returns the id of a line that is not a message when it can be
// read: a JSON object with a string id, or a line that starts the way the
// driver spells an invoke. Otherwise it returns "".
func lineID(line []byte) string {
	var m struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(line, &m) == nil {
		return m.ID
	}
	rest, ok := bytes.CutPrefix(line, invokePrefix)
	if q := bytes.IndexByte(rest, '"'); ok && q > 0 && bytes.IndexByte(rest[:q], '\\') < 0 {
		return string(rest[:q])
	}
	return ""
}

// errLineTooLong is returned for a line over the limit.
var errLineTooLong = errors.New("line exceeds the protocol's max_line")

// readLine returns the next line without its newline. The slice is valid
// until the next call.
func readLine(br *bufio.Reader, maxLine int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	long := append([]byte(nil), line...)
	for {
		line, err = br.ReadSlice('\n')
		long = append(long, line...)
		if len(long) > maxLine {
			return nil, errLineTooLong
		}
		switch {
		case err == nil:
			return long[:len(long)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
