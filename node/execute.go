package node

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andromeda-runner/andromeda/action"
	"github.com/andromeda-runner/andromeda/envelope"
	"github.com/andromeda-runner/andromeda/executor"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// Executions (docs/design.md, "Actions"): the actions of an ok run are
// planned in the ledger (store/ledger.go) before the run is recorded,
// executed once it is, and resumed at start when the node stopped before
// they ended. Each execution has an idempotency key derived from the
// service, the run and the digest of what it sends; every attempt of it
// sends the same key, so an endpoint that honours Idempotency-Key sees it
// once however often the node was killed in between.

// ExecutorsConfig is how the node performs actions.
type ExecutorsConfig struct {
	// HTTP bounds http actions.
	HTTP ExecHTTPConfig `json:"http" yaml:"http"`
	// Targets are where submit actions go: target name → its endpoint.
	// The envelope is signed with the node's key for the target (andromeda
	// keys create TARGET).
	Targets map[string]TargetConfig `json:"targets,omitempty" yaml:"targets,omitempty"`
	// Kinds registers executors for action kinds that are not built in:
	// kind → the name of an operator-owned service. An action of kind K is
	// published as an event on topic executor.K, which that service's
	// event trigger consumes.
	Kinds map[string]string `json:"kinds,omitempty" yaml:"kinds,omitempty"`
	// Attempts is how many times an execution is tried on transient
	// failures (no answer, 408, 425, 429, 5xx) before it fails, from 1 to
	// 100. Default 8.
	Attempts int `json:"attempts" yaml:"attempts"`
	// Backoff is the wait after the first failed attempt (a duration),
	// doubling after each, with jitter, up to backoff_max. Default 500ms.
	Backoff string `json:"backoff" yaml:"backoff"`
	// BackoffMax is the longest wait between two attempts (a duration).
	// Default 1m.
	BackoffMax string `json:"backoff_max" yaml:"backoff_max"`
	// Workers is how many executions run at once, from 1 to 1024.
	// Default 16.
	Workers int `json:"workers" yaml:"workers"`
}

// ExecHTTPConfig bounds http actions and submit envelopes' requests.
type ExecHTTPConfig struct {
	// AllowPrivate lets http actions reach loopback, link-local and
	// private addresses (checked on the resolved address). Default false.
	// The node's own listeners are never reachable.
	AllowPrivate bool `json:"allow_private" yaml:"allow_private"`
	// Timeout of one attempt, from 100ms to 5m. Default 10s.
	Timeout string `json:"timeout" yaml:"timeout"`
	// MaxResponse is how much of an answer's body is recorded, from 0 to
	// 1Mi. Default 4Ki.
	MaxResponse string `json:"max_response" yaml:"max_response"`
}

// TargetConfig is where one target's envelopes go.
type TargetConfig struct {
	// Endpoint is the http or https URL the signed envelope is POSTed to.
	Endpoint string `json:"endpoint" yaml:"endpoint"`
}

// DefaultExecutorsConfig returns the documented defaults.
func DefaultExecutorsConfig() ExecutorsConfig {
	return ExecutorsConfig{
		HTTP:     ExecHTTPConfig{Timeout: "10s", MaxResponse: "4Ki"},
		Attempts: 8, Backoff: "500ms", BackoffMax: "1m", Workers: 16,
	}
}

// execLimits is ExecutorsConfig in typed form.
type execLimits struct {
	timeout, backoff, backoffMax time.Duration
	maxResponse                  int64
}

var kindName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// Validate reports every problem, each with its key under "executors.".
func (c ExecutorsConfig) Validate() error {
	_, err := c.parse()
	return err
}

func (c ExecutorsConfig) parse() (execLimits, error) {
	var (
		l    execLimits
		errs []error
	)
	bad := func(key, rule string) { errs = append(errs, fmt.Errorf("executors.%s: %s", key, rule)) }
	dur := func(key, v string, lo, hi time.Duration) time.Duration {
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			bad(key, fmt.Sprintf("must be a duration from %s to %s", lo, hi))
		}
		return d
	}
	l.timeout = dur("http.timeout", c.HTTP.Timeout, 100*time.Millisecond, 5*time.Minute)
	l.backoff = dur("backoff", c.Backoff, 10*time.Millisecond, time.Hour)
	l.backoffMax = dur("backoff_max", c.BackoffMax, 10*time.Millisecond, 24*time.Hour)
	if l.backoffMax < l.backoff {
		bad("backoff_max", "must be at least executors.backoff")
	}
	if n, err := parseBytes(c.HTTP.MaxResponse); err != nil || n > 1<<20 {
		bad("http.max_response", "must be a size from 0 to 1Mi")
	} else {
		l.maxResponse = n
	}
	if c.Attempts < 1 || c.Attempts > 100 {
		bad("attempts", "must be from 1 to 100")
	}
	if c.Workers < 1 || c.Workers > 1024 {
		bad("workers", "must be from 1 to 1024")
	}
	for _, name := range sortedKeys(c.Targets) {
		if !targetName.MatchString(name) {
			bad("targets."+name, "a target name is [a-z0-9][a-z0-9_-]{0,62}")
		}
		if err := (executor.Grant{Any: true}).Allowed(c.Targets[name].Endpoint); err != nil {
			bad("targets."+name+".endpoint", "must be an absolute http or https URL")
		}
	}
	for _, kind := range sortedKeys(c.Kinds) {
		switch {
		case action.Builtin(kind):
			bad("kinds."+kind, "is a built-in kind")
		case !kindName.MatchString(kind):
			bad("kinds."+kind, "a kind is [a-z][a-z0-9-]{0,31}")
		case c.Kinds[kind] == "":
			bad("kinds."+kind, "must name a service")
		}
	}
	return l, errors.Join(errs...)
}

var targetName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ExecutorTopic is the topic actions of a registered kind are published on
// for the service that executes them.
func ExecutorTopic(kind string) string { return "executor." + kind }

// executions runs the ledger's executions: a queue, a pool of workers, and
// timers for retries.
type executions struct {
	n      *Node
	lim    execLimits
	cfg    ExecutorsConfig
	guard  executor.Guard
	client *http.Client
	log    *slog.Logger

	mu     sync.Mutex
	queue  []execJob
	wake   chan struct{}
	timers map[execJob]*time.Timer
	busy   map[execJob]bool // being executed now: a second copy waits
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	// testHook, when set, is called with each execution just before its
	// request is sent ("send"), before its end is recorded ("end": an
	// error is the store's refusal) and after it is confirmed; tests only.
	testHook atomic.Pointer[func(stage string, e store.Execution) error]
}

// hook calls testHook, when set.
func (x *executions) hook(stage string, e store.Execution) error {
	if f := x.testHook.Load(); f != nil {
		return (*f)(stage, e)
	}
	return nil
}

type execJob struct {
	service, run string
	seq          int
}

func (n *Node) openExecutions(own func() []string) error {
	lim, err := n.cfg.Executors.parse()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	x := &executions{
		n: n, lim: lim, cfg: n.cfg.Executors, log: n.log,
		guard: executor.Guard{AllowPrivate: n.cfg.Executors.HTTP.AllowPrivate, Own: own},
		wake:  make(chan struct{}, 1), timers: map[execJob]*time.Timer{}, busy: map[execJob]bool{},
		ctx: ctx, cancel: cancel,
	}
	x.client = x.guard.Client(lim.timeout)
	n.exec = x
	for range n.cfg.Executors.Workers {
		x.wg.Add(1)
		go x.work()
	}
	return nil
}

// close stops the workers; executions under way are abandoned where they
// are (the ledger says so) and resumed at the next start.
func (x *executions) close() error {
	x.mu.Lock()
	x.closed = true
	for _, t := range x.timers {
		t.Stop()
	}
	x.mu.Unlock()
	x.cancel()
	x.wg.Wait()
	return nil
}

// resume queues every execution the ledger holds open: a node that
// stopped in the middle goes on where it was. An execution whose run was
// never recorded (the node stopped between planning and recording) was
// never acknowledged to anyone: it fails without being sent. Where other
// nodes share the store, only this node's executions are resumed: the
// others' are in flight on them (a node lost or left leaves its own to
// the node that takes its services over: adopt).
func (x *executions) resume(ctx context.Context) error {
	mine := func(e store.LedgerEntry) bool {
		return !x.n.cfg.sharesStore() || e.Node == "" || e.Node == x.n.cfg.Name
	}
	return x.take(ctx, mine, "")
}

// adopt takes over the open executions of service that node sent, once
// this node took the service over from it (lost or left): they are sent
// from here on, under the same idempotency keys.
func (x *executions) adopt(ctx context.Context, service, node string) error {
	return x.take(ctx, func(e store.LedgerEntry) bool { return e.Service == service && e.Node == node }, node)
}

// take queues the open executions that want says are to be sent here;
// from, when set, is the node they are taken from (each is written as
// this node's first, by compare-and-swap).
func (x *executions) take(ctx context.Context, want func(store.LedgerEntry) bool, from string) error {
	open, err := x.n.store.OpenExecutions(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, e := range open {
		if !want(e) {
			continue
		}
		if from != "" {
			e.Node, e.Updated = x.n.cfg.Name, time.Now().UTC()
			rev, err := x.n.store.UpdateExecution(ctx, e.Execution, e.Revision)
			if errors.Is(err, store.ErrConflict) {
				continue // changed meanwhile: its sender is alive, or another took it
			}
			if err != nil {
				return err
			}
			e.Revision = rev
			x.log.Warn("execution taken over from a node gone", logService, e.Service, logRun, e.Run, "seq", e.Seq, "from", from)
		}
		id := e.Service + "." + e.Run
		if e.State != store.ExecPlanned {
			// Sent before: its run was recorded then, and may since have
			// left the store's retention.
			seen[id] = true
		}
		if _, ok := seen[id]; !ok {
			_, err := x.n.store.Run(ctx, e.Service, e.Run)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			seen[id] = err == nil
		}
		if !seen[id] {
			e.State, e.Error, e.Updated = store.ExecFailed, "not executed: the node stopped before its run was recorded", time.Now().UTC()
			if _, err := x.n.store.UpdateExecution(ctx, e.Execution, e.Revision); err != nil {
				return err
			}
			continue
		}
		x.log.Info("resuming an execution", logService, e.Service, logRun, e.Run, "seq", e.Seq, "kind", e.Kind, "state", e.State, "attempts", e.Attempts)
		x.enqueue(execJob{e.Service, e.Run, e.Seq})
	}
	return nil
}

func (x *executions) enqueue(j execJob) {
	x.mu.Lock()
	if !x.closed {
		x.queue = append(x.queue, j)
	}
	x.mu.Unlock()
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// later queues j after d.
func (x *executions) later(j execJob, d time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return
	}
	if t, ok := x.timers[j]; ok {
		t.Stop()
	}
	x.timers[j] = time.AfterFunc(d, func() {
		x.mu.Lock()
		delete(x.timers, j)
		x.mu.Unlock()
		x.enqueue(j)
	})
}

func (x *executions) next() (execJob, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, j := range x.queue {
		if !x.busy[j] {
			x.queue = slices.Delete(x.queue, i, i+1)
			x.busy[j] = true
			return j, true
		}
	}
	return execJob{}, false
}

func (x *executions) work() {
	defer x.wg.Done()
	for {
		j, ok := x.next()
		if !ok {
			select {
			case <-x.wake:
				continue
			case <-x.ctx.Done():
				return
			}
		}
		// Another worker may be waiting for the same wake-up.
		select {
		case x.wake <- struct{}{}:
		default:
		}
		x.run(j)
		x.mu.Lock()
		delete(x.busy, j)
		x.mu.Unlock()
		if x.ctx.Err() != nil {
			return
		}
	}
}

// run takes one attempt at j, if it is due, and writes what became of it.
func (x *executions) run(j execJob) {
	ctx := x.ctx
	log := x.log.With(logService, j.service, logRun, j.run, "seq", j.seq)
	defer func() {
		if p := recover(); p != nil {
			log.Error("panic in an execution", "panic", p)
		}
	}()
	e, err := x.n.store.Execution(ctx, j.service, j.run, j.seq)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("read execution; trying again later", logErr, err)
			x.later(j, x.lim.backoff)
		}
		return
	}
	if store.Final(e.State) {
		return
	}
	if e.State == store.ExecRetry && time.Until(e.Next) > 0 {
		x.later(j, time.Until(e.Next))
		return
	}
	e.State, e.Attempts, e.Updated = store.ExecSent, e.Attempts+1, time.Now().UTC()
	rev, err := x.n.store.UpdateExecution(ctx, e.Execution, e.Revision)
	if errors.Is(err, store.ErrConflict) {
		return // someone else took it
	}
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("mark execution sent; trying again later", logErr, err)
			x.later(j, x.lim.backoff)
		}
		return
	}
	_ = x.hook("send", e.Execution)
	resp, err := x.perform(ctx, e.Execution)
	if ctx.Err() != nil {
		return // stopping: the next start resumes it, under the same key
	}
	switch {
	case err == nil && (resp.Status == 0 || resp.Status/100 == 2):
		e.State, e.Error = store.ExecConfirmed, ""
	case executor.Transient(resp.Status, err) && e.Attempts < x.cfg.Attempts:
		wait := executor.Backoff(e.Attempts, x.lim.backoff, x.lim.backoffMax)
		e.State, e.Next, e.Error = store.ExecRetry, time.Now().Add(wait).UTC(), failure(resp, err)
	default:
		e.State, e.Error = store.ExecFailed, failure(resp, err)
		if executor.Transient(resp.Status, err) {
			e.Error = fmt.Sprintf("gave up after %d attempts (executors.attempts): %s", e.Attempts, e.Error)
		}
	}
	if resp != (store.Response{}) {
		e.Response = &resp
	}
	e.Updated = time.Now().UTC()
	// The attempt is over and its result known: only the record of it is
	// tried again, never the attempt (sent again, it would be done twice;
	// a log line has no idempotency key). Also when the node is stopping.
	wctx := context.WithoutCancel(ctx)
	for try := 1; ; try++ {
		err := x.hook("end", e.Execution)
		if err == nil {
			uctx, cancel := context.WithTimeout(wctx, 5*time.Second)
			_, err = x.n.store.UpdateExecution(uctx, e.Execution, rev)
			cancel()
		}
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrConflict) || try == endRecordAttempts || ctx.Err() != nil {
			// Left as sent: resumed, and sent again under its key, at
			// the next start.
			log.Error("execution's end not recorded: it stays sent, and is sent again at the next start", "kind", e.Kind, "state", e.State, logErr, err)
			return
		}
		log.Warn("record execution's end; trying again", logErr, err)
		select {
		case <-ctx.Done(): // stopping: one last try
		case <-time.After(executor.Backoff(try, x.lim.backoff, x.lim.backoffMax)):
		}
	}
	x.n.metrics.executed(e.Kind, e.State)
	switch e.State {
	case store.ExecConfirmed:
		_ = x.hook("confirmed", e.Execution)
	case store.ExecRetry:
		log.Info("execution failed; retrying", "kind", e.Kind, "attempt", e.Attempts, "next", e.Next, logErr, e.Error)
		x.later(j, time.Until(e.Next))
	case store.ExecFailed:
		log.Warn("execution failed", "kind", e.Kind, "attempts", e.Attempts, logErr, e.Error)
	}
}

// endRecordAttempts bounds the writes of an execution's end.
const endRecordAttempts = 8

func failure(r store.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return executor.Answered(r.Status)
}

// perform sends one attempt of e. A response with status 0 and no error
// is a success that is not an HTTP exchange (an event, a log line).
func (x *executions) perform(ctx context.Context, e store.Execution) (store.Response, error) {
	switch e.Kind {
	case action.HTTP:
		var p struct {
			Method  string            `json:"method"`
			URL     string            `json:"url"`
			Headers map[string]string `json:"headers"`
			Body    json.RawMessage   `json:"body"`
		}
		if err := json.Unmarshal(e.Request, &p); err != nil {
			return store.Response{}, fmt.Errorf("%w: params: %v", executor.ErrRefused, err)
		}
		body, ctype := httpBody(p.Body)
		req, err := http.NewRequest(p.Method, p.URL, bytes.NewReader(body))
		if err != nil {
			return store.Response{}, fmt.Errorf("%w: %v", executor.ErrRefused, err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range p.Headers {
			req.Header.Set(k, v)
		}
		return x.send(ctx, req, e.Key)
	case action.Submit:
		if e.Endpoint == "" {
			return store.Response{}, fmt.Errorf("%w: target %s has no endpoint (executors.targets.%s.endpoint)", executor.ErrRefused, e.Target, e.Target)
		}
		req, err := http.NewRequest(http.MethodPost, e.Endpoint, bytes.NewReader(e.Request))
		if err != nil {
			return store.Response{}, fmt.Errorf("%w: %v", executor.ErrRefused, err)
		}
		req.Header.Set("Content-Type", "application/json")
		return x.send(ctx, req, e.Key)
	case action.Emit, action.Publish:
		var p struct {
			Topic   string          `json:"topic"`
			Message json.RawMessage `json:"message"`
		}
		if err := json.Unmarshal(e.Request, &p); err != nil {
			return store.Response{}, fmt.Errorf("%w: params: %v", executor.ErrRefused, err)
		}
		owner, err := x.ownerOf(ctx, e.Service)
		if err != nil {
			return store.Response{}, err // the store did not answer: tried again
		}
		seq, err := x.n.publishID(ctx, owner == "operator", owner, "service:"+e.Service, p.Topic, p.Message, e.Key)
		return store.Response{Seq: seq}, publishFailure(err)
	case action.Log:
		var p struct {
			Message string         `json:"message"`
			Level   string         `json:"level"`
			Fields  map[string]any `json:"fields"`
		}
		if err := json.Unmarshal(e.Request, &p); err != nil {
			return store.Response{}, fmt.Errorf("%w: params: %v", executor.ErrRefused, err)
		}
		args := []any{logService, e.Service, logRun, e.Run, "seq", e.Seq}
		for _, k := range sortedKeys(p.Fields) {
			args = append(args, "field."+k, p.Fields[k])
		}
		x.log.Log(ctx, logLevel(p.Level), "action log: "+p.Message, args...)
		return store.Response{}, nil
	default:
		svc, ok := x.cfg.Kinds[e.Kind]
		if !ok {
			return store.Response{}, fmt.Errorf("%w: no executor for kind %q (executors.kinds)", executor.ErrRefused, e.Kind)
		}
		rec, err := x.n.store.Service(ctx, svc)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.Response{}, fmt.Errorf("read the executor of kind %q, service %s: %w", e.Kind, svc, err) // tried again
		}
		if err != nil || !operatorOwned(rec.Owner) {
			return store.Response{}, fmt.Errorf("%w: the executor of kind %q, service %s, is not an operator's deployed service", executor.ErrRefused, e.Kind, svc)
		}
		msg, _ := json.Marshal(map[string]any{"kind": e.Kind, "params": e.Request, "service": e.Service, "run": e.Run, "key": e.Key})
		seq, err := x.n.publishID(ctx, true, "operator", "executor:"+e.Kind, ExecutorTopic(e.Kind), msg, e.Key)
		return store.Response{Seq: seq}, publishFailure(err)
	}
}

// publishFailure is a publish's error as an execution sees it: a topic or
// message the bus refuses is final; anything else is worth retrying.
func publishFailure(err error) error {
	var se *server.Error
	if errors.As(err, &se) && (se.Kind == server.ErrInvalid || se.Kind == server.ErrForbidden) {
		return fmt.Errorf("%w: %s", executor.ErrRefused, se.Msg)
	}
	return err
}

func (x *executions) send(ctx context.Context, req *http.Request, key string) (store.Response, error) {
	r, err := executor.Do(ctx, x.client, req, key, x.lim.maxResponse)
	return store.Response{Status: r.Status, Body: r.Body, Truncated: r.Truncated}, err
}

func (x *executions) ownerOf(ctx context.Context, service string) (string, error) {
	if d := x.n.lookup(service); d != nil {
		return ownerName(d.rec.Owner), nil
	}
	rec, err := x.n.store.Service(ctx, service)
	switch {
	case err == nil:
		return ownerName(rec.Owner), nil
	case errors.Is(err, store.ErrNotFound):
		return "", nil // removed: publishes nothing outside an empty namespace
	}
	return "", fmt.Errorf("read the owner of service %s: %w", service, err)
}

func ownerName(owner string) string {
	if owner == "" {
		return "operator"
	}
	return owner
}

func operatorOwned(owner string) bool { return owner == "" || owner == "operator" }

func logLevel(l string) slog.Level {
	switch l {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// httpBody is an http action's body as sent: a JSON string as its text,
// any other JSON value as JSON.
func httpBody(raw json.RawMessage) ([]byte, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []byte(s), ""
	}
	return raw, "application/json"
}

// runTarget is what planning needs to know of a run's service.
type runTarget struct {
	target string // the manifest's target
}

// plan turns an ok run's actions into executions: one per action, except
// that every submit action becomes part of one signed envelope. Planning
// is deterministic, so the same run planned twice (a retried record)
// gives the same executions and keys.
func (x *executions) plan(run store.Run, rt runTarget) []store.Execution {
	if run.Output == nil || len(run.Output.Actions) == 0 {
		return nil
	}
	now := run.Start.UTC()
	var out []store.Execution
	var submits []int
	for i, a := range run.Output.Actions {
		if a.Kind == action.Submit {
			submits = append(submits, i)
			continue
		}
		canon, err := envelope.CanonicalJSON(a.Params)
		e := store.Execution{
			Service: run.Service, Run: run.ID, Seq: i, Actions: []int{i}, Kind: a.Kind,
			Request: a.Params, State: store.ExecPlanned, Created: now, Updated: now,
		}
		if err != nil {
			e.State, e.Error = store.ExecFailed, "params: "+err.Error()
			canon = a.Params
		}
		e.Digest = executor.Digest(canon)
		e.Key = executor.Key(run.Service, run.ID, fmt.Sprintf("%d:%s", i, e.Digest))
		out = append(out, e)
	}
	if len(submits) > 0 {
		out = append(out, x.planSubmit(run, rt, submits, now))
		slices.SortFunc(out, func(a, b store.Execution) int { return a.Seq - b.Seq })
	}
	return out
}

// planSubmit seals the run's submit actions into one envelope for the
// service's target, signed with the node's key for it.
func (x *executions) planSubmit(run store.Run, rt runTarget, idx []int, now time.Time) store.Execution {
	e := store.Execution{
		Service: run.Service, Run: run.ID, Seq: idx[0], Actions: idx, Kind: action.Submit, Target: rt.target,
		State: store.ExecPlanned, Created: now, Updated: now,
	}
	if tc, ok := x.cfg.Targets[rt.target]; ok {
		e.Endpoint = tc.Endpoint
	}
	env := envelope.Envelope{Service: run.Service, Version: run.Version, RunID: run.ID, Target: rt.target, Created: now}
	for _, i := range idx {
		env.Actions = append(env.Actions, run.Output.Actions[i].Params)
	}
	sealed, err := x.seal(env)
	switch {
	case err != nil:
		e.State, e.Error = store.ExecFailed, "not sent: "+err.Error()
		e.Digest = executor.Digest([]byte(run.ID))
	case e.Endpoint == "":
		e.State, e.Error = store.ExecFailed, fmt.Sprintf("not sent: target %s has no endpoint in the node's config (executors.targets.%s.endpoint)", rt.target, rt.target)
		e.Digest, e.Request = sealed.Digest, sealed.Body
	default:
		e.Digest, e.Request = sealed.Digest, sealed.Body
	}
	e.Key = executor.Key(run.Service, run.ID, e.Digest)
	return e
}

// seal signs env with the node's key for its target.
func (x *executions) seal(env envelope.Envelope) (envelope.Sealed, error) {
	s, err := x.n.signer(env.Target)
	if err != nil {
		return envelope.Sealed{}, err
	}
	return envelope.Seal(env, s)
}

// signerFunc is how the node finds its key for a target; the keyring
// (node/keys.go) provides it.
type signerFunc func(target string) (crypto.Signer, error)

// planRun plans run's executions in the ledger; a run that asks for none
// plans nothing. Its service's target comes from d, or the registry for a
// service removed since.
func (n *Node) planRun(ctx context.Context, run store.Run) ([]store.Execution, error) {
	if run.Outcome != "ok" || run.Output == nil || len(run.Output.Actions) == 0 || n.exec == nil {
		return nil, nil
	}
	var rt runTarget
	if d := n.lookup(run.Service); d != nil {
		rt.target = d.manifest.Target
	} else if rec, err := n.store.Service(ctx, run.Service); err == nil {
		rt.target = rec.Target
	}
	es := n.exec.plan(run, rt)
	if err := n.store.PlanExecutions(ctx, es); err != nil {
		return nil, err
	}
	return es, nil
}

// startExecutions queues a recorded run's planned executions.
func (n *Node) startExecutions(es []store.Execution) {
	for _, e := range es {
		if !store.Final(e.State) {
			n.exec.enqueue(execJob{e.Service, e.Run, e.Seq})
		}
	}
}

// executorFor says whether kind, not built in, has an executor here.
func (n *Node) executorFor(kind string) bool {
	_, ok := n.cfg.Executors.Kinds[kind]
	return ok
}

// trimErr keeps an execution's error readable in listings.
func trimErr(s string) string { return strings.TrimSpace(truncate(s, 1024)) }
