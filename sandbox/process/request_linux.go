package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

var _ sandbox.Tester = (*deployment)(nil)

// errNotAccepted says a worker does not answer a request type: its ready
// message did not list it in accepts.
var errNotAccepted = errors.New("not accepted by the worker")

// request sends one optional request (test, offer) in a slot reserved
// with reserve and waits for its answer, the worker's death or ctx. A
// worker whose ready message does not accept typ is not asked:
// errNotAccepted.
func (w *workerProc) request(ctx context.Context, typ string) ([]byte, error) {
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return nil, errRetry
	}
	if !slices.Contains(w.accepts, typ) {
		w.inflight--
		w.mu.Unlock()
		return nil, errNotAccepted
	}
	w.nextID++
	c := &call{id: strconv.FormatUint(w.nextID, 10), reply: make(chan reply, 1)}
	c.logs.max = w.maxLog
	w.calls[c.id] = c
	w.mu.Unlock()
	msg := worker.Message{Type: typ, ID: c.id, Module: "main"}
	if dl, ok := ctx.Deadline(); ok {
		msg.Deadline = dl.UnixMilli()
	}
	line, _ := json.Marshal(msg)
	if err := w.write(append(line, '\n')); err != nil {
		w.finish(c)
		return nil, fmt.Errorf("write %s message: %w", typ, err)
	}
	var r reply
	select {
	case r = <-c.reply:
	case <-ctx.Done():
		w.finish(c)
		_ = w.write([]byte(`{"type":"cancel","id":"` + c.id + `"}` + "\n"))
		return nil, fmt.Errorf("%s: no answer: %w", typ, ctx.Err())
	}
	switch {
	case r.died != nil:
		return nil, fmt.Errorf("%s: the worker died: %s", typ, w.callLogs(c, r.died.detail))
	case r.err != nil:
		msg := r.err.Message
		if r.err.Stack != "" && !strings.Contains(msg, r.err.Stack) {
			msg += "\n" + r.err.Stack
		}
		return nil, errors.New(w.callLogs(c, msg))
	}
	return r.output, nil
}

// ask sends one optional request to a worker of d: a warm one in server
// mode, a fresh one in command mode. The answer is errNotAccepted when the
// worker does not take typ.
func (d *deployment) ask(ctx context.Context, typ string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if d.mode == sandbox.ModeCommand {
		d.mu.Lock()
		if d.stopped {
			d.mu.Unlock()
			return nil, sandbox.ErrStopped
		}
		d.bg.Add(1)
		d.mu.Unlock()
		defer d.bg.Done()
		w, err := d.newWorker(ctx)
		if err != nil {
			return nil, fmt.Errorf("start a worker: %w", err)
		}
		defer d.retire(w)
		if !w.reserve() {
			return nil, errors.New("fresh worker refused the request")
		}
		return w.request(ctx, typ)
	}
	for {
		w, exit, err := d.acquire(ctx)
		if w == nil {
			if err == nil {
				err = errors.New(exit.Detail)
			}
			return nil, err
		}
		out, err := w.request(ctx, typ)
		if errors.Is(err, errRetry) {
			continue
		}
		return out, err
	}
}

// Test runs the service's self-test (a test message to one of its
// workers) within the deployment's timeout. A worker that does not accept
// test messages, or a module without a test, has none: ran is false.
func (d *deployment) Test(ctx context.Context) (ran bool, err error) {
	out, err := d.ask(ctx, worker.TypeTest)
	switch {
	case errors.Is(err, errNotAccepted):
		return false, nil
	case err != nil:
		return true, err
	}
	var res worker.TestResult
	if err := json.Unmarshal(out, &res); err != nil {
		return true, fmt.Errorf("test: the answer %.100q is not {\"ran\": true|false}", out)
	}
	return res.Ran, nil
}

// RuntimeOffer deploys spec (a registered runtime's service, even one
// disabled) with one warm worker and asks it for the properties its
// runtime adds to the node's offer (an offer message). A worker that does
// not accept offer messages adds none: nil, nil.
func (d *Driver) RuntimeOffer(ctx context.Context, spec sandbox.Spec) (map[string]any, error) {
	spec.Mode = sandbox.ModeServer
	spec.Limits.Concurrency = 1
	if spec.Limits.Timeout <= 0 {
		spec.Limits.Timeout = 10 * time.Second
	}
	dep, err := d.deploy(context.WithValue(ctx, anyLanguage{}, true), spec, "")
	if err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = dep.Stop(sctx)
	}()
	out, err := dep.ask(ctx, worker.TypeOffer)
	switch {
	case errors.Is(err, errNotAccepted):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("offer: %w", err)
	}
	var res worker.OfferResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("offer: the answer %.100q is not {\"properties\": {...}}", out)
	}
	return res.Properties, nil
}
