package node

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/trigger"
)

// onTick is the scheduler's callback: one goroutine per tick.
func (n *Node) onTick(ev trigger.Event) {
	d := n.lookup(ev.Service)
	if d == nil {
		return // removed between the tick and now
	}
	n.invoke(n.ctx, d, ev)
}

// Fire implements server.Backend: run a service now and wait for the run.
func (n *Node) Fire(ctx context.Context, name string, message json.RawMessage) (api.Run, error) {
	d := n.lookup(name)
	if d == nil {
		if _, err := n.store.Service(ctx, name); err != nil {
			return api.Run{}, err
		}
		return api.Run{}, &api.Error{Status: http.StatusConflict, Message: fmt.Sprintf("service %s is registered but not deployed (see andromeda inspect %s)", name, name)}
	}
	if len(message) > 0 && !json.Valid(message) {
		return api.Run{}, &api.Error{Status: http.StatusBadRequest, Message: "message: must be valid JSON"}
	}
	if !d.manual {
		return api.Run{}, &api.Error{Status: http.StatusConflict, Message: fmt.Sprintf("service %s has no manual trigger", name)}
	}
	ev := trigger.Event{Service: name, Trigger: d.manualName, Kind: trigger.KindManual, At: time.Now().UTC(), Message: message}
	// A manual run is not abandoned when its caller hangs up: it finishes
	// and is recorded; the caller just stops waiting.
	done := make(chan api.Run, 1)
	go func() { done <- n.invoke(n.ctx, d, ev) }()
	select {
	case r := <-done:
		return r, nil
	case <-ctx.Done():
		return api.Run{}, ctx.Err()
	}
}

// invoke runs one invocation of d for ev, applies its state change, records
// the run and returns it. It never returns an error: every failure is data
// on the run.
func (n *Node) invoke(ctx context.Context, d *deployed, ev trigger.Event) api.Run {
	n.runs.Add(1)
	defer n.runs.Done()
	run := api.Run{
		ID:       newRunID(),
		Service:  d.name,
		Version:  d.version,
		Owner:    d.owner,
		Trigger:  contract.Trigger{Kind: ev.Kind, Name: ev.Trigger, Topic: ev.Topic, At: ev.At.UTC().Format(time.RFC3339Nano)},
		Start:    time.Now().UTC(),
		Attempts: 0,
	}
	log := n.log.With(logService, d.name, logRun, run.ID, logTrigger, ev.Trigger)

	if ev.Kind == trigger.KindCron {
		if skip, until := d.health.Skip(run.Start); skip {
			st := d.health.State()
			return n.finish(log, d, run, sandbox.Skipped, fmt.Sprintf("skipped: unhealthy after %d consecutive failures; backing off until %s", st.Failures, until.Format(time.RFC3339)), nil)
		}
	}
	select {
	case d.sem <- struct{}{}:
		defer func() { <-d.sem }()
	default:
		return n.finish(log, d, run, sandbox.Skipped, fmt.Sprintf("skipped: concurrency limit reached (%d runs in progress, resources.concurrency = %d)", cap(d.sem), cap(d.sem)), nil)
	}

	var (
		res sandbox.Result
		err error
	)
	for attempt := 1; attempt <= 2; attempt++ {
		run.Attempts = attempt
		var snap store.Snapshot
		if d.state {
			snap, err = n.store.State(ctx, d.name)
			if err != nil {
				return n.finish(log, d, run, sandbox.Error, "read state: "+err.Error(), nil)
			}
		}
		in := contract.Input{RunID: run.ID, Service: d.name, Trigger: run.Trigger, Message: ev.Message, State: snap.Values, Config: d.config}
		dep, derr := n.ensureDeployed(ctx, d)
		if derr != nil {
			return n.finish(log, d, run, sandbox.Error, derr.Error(), nil)
		}
		res, err = sandbox.Call(ctx, dep, in, d.timeout)
		if err != nil {
			return n.finish(log, d, run, sandbox.Error, "runner: "+err.Error(), &res)
		}
		if res.Outcome != sandbox.OK && res.Outcome != sandbox.Noop {
			break
		}
		if res.Output.State.Empty() {
			break
		}
		if !d.state {
			res.Outcome, res.Error = sandbox.Error, "state: the service changed state but its manifest does not grant capabilities.state"
			break
		}
		_, err = n.store.ApplyState(ctx, d.name, snap, res.Output.State)
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrConflict) && attempt == 1 {
			log.Info("state conflict, retrying once on fresh state")
			continue
		}
		// Its actions are not executed when the state write fails.
		res.Outcome, res.Error = sandbox.Error, "state: "+err.Error()
		if errors.Is(err, store.ErrConflict) {
			res.Error = "state: changed by another run twice in a row; actions dropped"
		}
		break
	}
	return n.finish(log, d, run, res.Outcome, res.Error, &res)
}

// finish fills the run's outcome, updates health and metrics, logs and
// records it.
func (n *Node) finish(log *slog.Logger, d *deployed, run api.Run, outcome sandbox.Outcome, detail string, res *sandbox.Result) api.Run {
	run.Outcome = string(outcome)
	run.Duration = time.Since(run.Start)
	switch outcome {
	case sandbox.Noop:
		run.Noop = res.Output.Noop
	case sandbox.Skipped:
		run.Noop = detail
	default:
		run.Error = detail
	}
	if res != nil {
		run.Usage = api.Usage{WallNS: int64(res.Usage.Wall), CPUNS: int64(res.Usage.CPU), PeakMemory: res.Usage.PeakMemory}
		if outcome == sandbox.OK || outcome == sandbox.Noop {
			out := res.Output
			run.Output = &out
		}
	}
	switch outcome {
	case sandbox.OK, sandbox.Noop:
		d.health.Success()
	case sandbox.Error, sandbox.Timeout, sandbox.Crashed, sandbox.OOM:
		if d.health.Failure(time.Now()) {
			st := d.health.State()
			log.Warn("service unhealthy", "failures", st.Failures, "skip_until", st.SkipUntil)
		}
	}
	n.metrics.observe(d.name, run.Outcome, run.Duration)
	if err := n.store.AppendRun(context.Background(), run); err != nil {
		log.Error("record run", logErr, err)
	}
	switch outcome {
	case sandbox.OK:
		log.Info("run", logOutcome, run.Outcome, "duration", run.Duration, "actions", len(run.Output.Actions), "emits", len(run.Output.Emit))
	case sandbox.Noop, sandbox.Skipped:
		log.Info("run", logOutcome, run.Outcome, "duration", run.Duration, "reason", run.Noop)
	default:
		log.Warn("run", logOutcome, run.Outcome, "duration", run.Duration, "error", truncate(run.Error, 512))
	}
	return run
}

var runIDEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newRunID returns a 20-character id that sorts by creation time (48 bits of
// milliseconds, then 48 random bits).
func newRunID() string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	rand.Read(b[6:])
	return runIDEncoding.EncodeToString(b[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
