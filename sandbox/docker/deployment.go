package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
)

// deployment is one service deployed in new containers: the process
// driver's pool over them, and the containers it has running.
type deployment struct {
	d    *Driver
	name string
	spec sandbox.Spec
	ws   workerSpec
	pool sandbox.Deployment

	mu   sync.Mutex
	live map[string]*containerProc // its containers not yet removed, by name (nil while starting)

	stopping atomic.Bool  // Stop was called
	stopBy   atomic.Int64 // stopDeadline, in Unix nanoseconds; 0: none

	inflight   int  // invocations in flight
	overlapped bool // another invocation started while one was in flight
}

var (
	_ sandbox.Placed         = (*deployment)(nil)
	_ sandbox.Tester         = (*deployment)(nil)
	_ sandbox.HealthReporter = (*deployment)(nil)
)

// poolConfig is the pool of dep's containers.
func (dep *deployment) poolConfig() process.PoolConfig {
	return process.PoolConfig{Config: dep.d.cfg.Process, Spec: dep.spec, Module: dep.ws.module, Start: dep.start}
}

// start starts one worker container. In command mode it is labelled with
// the run it serves (the input's run_id, else a generated id).
func (dep *deployment) start(ctx context.Context) (process.Proc, error) {
	cs := dep.ws.cs
	cs.name = dep.d.newName(dep.name)
	run := ""
	if dep.ws.mode == sandbox.ModeCommand {
		run, _ = ctx.Value(runKey{}).(string)
		if run == "" {
			var b [8]byte
			_, _ = rand.Read(b[:])
			run = "gen-" + hex.EncodeToString(b[:])
		}
	}
	cs.labels = dep.d.labels(RoleWorker, dep.name, dep.spec.Version, run)
	cs.onRelease = func() {
		dep.mu.Lock()
		delete(dep.live, cs.name)
		dep.mu.Unlock()
	}
	dep.mu.Lock()
	dep.live[cs.name] = nil
	dep.mu.Unlock()
	p, err := dep.d.startContainer(ctx, cs)
	if err != nil {
		// It stays live until its removal (maybe in the background)
		// calls onRelease, so Stop removes it too.
		return nil, err
	}
	dep.mu.Lock()
	if _, ok := dep.live[cs.name]; ok {
		dep.live[cs.name] = p
	}
	dep.mu.Unlock()
	if h, ok := ctx.Value(procKey{}).(*procHolder); ok {
		h.p = p
	}
	if dep.stopping.Load() {
		// Started while the deployment stops. The pool stops a worker
		// that registers after its Stop began; this also covers Close
		// during Deploy, before there is a pool to stop: the container
		// ends at once and NewPool fails fast.
		p.Kill()
	}
	p.stopBy = dep.stopDeadline
	return p, nil
}

// runKey is the context key of the run a command-mode invocation serves.
type runKey struct{}

// procKey is the context key of the procHolder a command-mode
// invocation's container is put in.
type procKey struct{}

// procHolder holds the container a command-mode invocation ran in.
type procHolder struct{ p *containerProc }

// Invoke runs one invocation on the pool. With network any, its usage
// has the bytes the container received and sent: in command mode, its
// own container's; in server mode, when it was the only invocation in
// flight on the deployment, the traffic of the deployment's containers
// while it ran (none otherwise: concurrent invocations share them).
func (dep *deployment) Invoke(ctx context.Context, input []byte) (sandbox.Exit, error) {
	if !dep.spec.Network.Any {
		if dep.ws.mode == sandbox.ModeCommand {
			ctx = withRun(ctx, input)
		}
		return dep.pool.Invoke(ctx, input)
	}
	if dep.ws.mode == sandbox.ModeCommand {
		h := &procHolder{}
		exit, err := dep.pool.Invoke(context.WithValue(withRun(ctx, input), procKey{}, h), input)
		if h.p != nil {
			exit.Usage.NetworkRx, exit.Usage.NetworkTx = h.p.network()
		}
		return exit, err
	}
	dep.mu.Lock()
	dep.overlapped = dep.overlapped || dep.inflight > 0
	dep.inflight++
	sole := dep.inflight == 1
	if sole {
		dep.overlapped = false
	}
	procs := dep.procs()
	dep.mu.Unlock()
	var rx0, tx0 int64
	if sole {
		rx0, tx0 = sumNetwork(procs)
	}
	exit, err := dep.pool.Invoke(ctx, input)
	dep.mu.Lock()
	dep.inflight--
	same := sole && !dep.overlapped && slices.Equal(procs, dep.procs())
	dep.mu.Unlock()
	if same {
		rx1, tx1 := sumNetwork(procs)
		exit.Usage.NetworkRx, exit.Usage.NetworkTx = max(rx1-rx0, 0), max(tx1-tx0, 0)
	}
	return exit, err
}

// Messages is how many protocol messages the deployment's workers were
// sent and sent back (sandbox.MessageCounter).
func (dep *deployment) Messages() (sent, received uint64) {
	if mc, ok := dep.pool.(sandbox.MessageCounter); ok {
		return mc.Messages()
	}
	return 0, 0
}

// withRun puts the run_id of input into ctx, for the container's label.
func withRun(ctx context.Context, input []byte) context.Context {
	if run := runID(input); run != "" {
		return context.WithValue(ctx, runKey{}, run)
	}
	return ctx
}

// procs lists dep's started containers, by name. Called with dep.mu held.
func (dep *deployment) procs() []*containerProc {
	var ps []*containerProc
	for _, name := range slices.Sorted(maps.Keys(dep.live)) {
		if p := dep.live[name]; p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// sumNetwork reads the network counters of ps, summed.
func sumNetwork(ps []*containerProc) (rx, tx int64) {
	for _, p := range ps {
		r, t := p.sampleNetwork()
		rx, tx = rx+r, tx+t
	}
	return rx, tx
}

// Stop stops the pool (gracefully within ctx, then by force) and removes
// every container of the deployment. Its engine calls (kills, removals)
// end at the latest Process.KillWait after ctx (so a Stop with no time
// left, Close, still kills and removes its containers on an engine that
// answers): when the engine does not answer,
// Stop returns then with an error naming what was left, and the driver no
// longer counts those containers as its own, so that Reap removes them
// once the engine is back. Safe to call more than once.
func (dep *deployment) Stop(ctx context.Context) error {
	by := time.Time{}
	if dl, ok := ctx.Deadline(); ok {
		by = dl
	}
	if ctx.Err() != nil {
		by = time.Now()
	}
	if !by.IsZero() {
		dep.stopBy.CompareAndSwap(0, by.Add(dep.d.cfg.Process.KillWait).UnixNano())
	}
	dep.stopping.Store(true)
	dep.mu.Lock()
	pool := dep.pool // nil while Deploy starts it (Close stops it then)
	dep.mu.Unlock()
	var errs []error
	if pool != nil {
		errs = append(errs, pool.Stop(ctx))
	}
	rmCtx, cancel := context.Background(), context.CancelFunc(func() {})
	if s := dep.stopDeadline(); !s.IsZero() {
		rmCtx, cancel = context.WithDeadline(rmCtx, s)
	}
	defer cancel()
	errs = append(errs, dep.removeAll(rmCtx))
	dep.d.untrack(dep)
	return errors.Join(errs...)
}

// stopDeadline is the latest end of the engine calls of a stopping
// deployment: Process.KillWait after the end of Stop's context; zero before
// Stop, or when Stop's context has no deadline.
func (dep *deployment) stopDeadline() time.Time {
	if n := dep.stopBy.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// removeAll force-removes the containers of dep still there within ctx
// (30 s when it has no deadline). A container it could not remove is no longer counted as the driver's
// (Reap removes it) and is named in the error.
func (dep *deployment) removeAll(ctx context.Context) error {
	dep.mu.Lock()
	names := slices.Sorted(maps.Keys(dep.live))
	dep.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	cli, err := dep.d.client()
	var errs []error
	for _, name := range names {
		if err == nil {
			_, err := cli.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
			switch {
			case cerrdefs.IsConflict(err):
				// Its removal is under way already (a start cut short
				// removes its container in the background): wait for it.
				err = waitGone(ctx, cli, name)
			case cerrdefs.IsNotFound(err):
				// Not made yet, or made and gone: a start cut short
				// by its caller's deadline leaves the engine's create
				// running, and removes what it makes in the
				// background. Stop returns once that is done, and
				// what it may have left is removed.
				if err = dep.d.waitCut(ctx, name); err == nil {
					_, err = cli.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
				}
			}
			if err != nil && !cerrdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("remove container %s: %w", name, err))
			}
		}
		dep.d.forget(name)
		dep.mu.Lock()
		delete(dep.live, name)
		dep.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("stop %s: containers %s left: %w", dep.name, strings.Join(names, ", "), err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w at %s: stop %s: %w (Reap removes them once the engine answers)", ErrEngine, dep.d.host(), dep.name, errors.Join(errs...))
	}
	return nil
}

// waitGone waits until the engine no longer has container name, or ctx
// ends.
func waitGone(ctx context.Context, cli *client.Client, name string) error {
	for {
		_, err := cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		switch {
		case cerrdefs.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s still there: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Placement says where the service runs: new containers of its image.
func (dep *deployment) Placement() sandbox.Placement {
	dep.mu.Lock()
	names := slices.Sorted(maps.Keys(dep.live))
	dep.mu.Unlock()
	return sandbox.Placement{Kind: sandbox.PlacementNew, Containers: names, Image: dep.ws.image.id, Reason: dep.ws.reason}
}

// Test runs the service's own self-test (the runtime protocol's test
// message) in a worker.
func (dep *deployment) Test(ctx context.Context) (bool, error) {
	if t, ok := dep.pool.(sandbox.Tester); ok {
		return t.Test(ctx)
	}
	return false, nil
}

// Health reports a crash-looping service.
func (dep *deployment) Health() (bool, string) {
	if h, ok := dep.pool.(sandbox.HealthReporter); ok {
		return h.Health()
	}
	return true, ""
}

// WorkersStarted returns how many worker containers a deployment of this
// driver has started, restarts included; -1 for any other deployment.
func WorkersStarted(dep sandbox.Deployment) int64 {
	if d, ok := dep.(*deployment); ok {
		return process.WorkersStarted(d.pool)
	}
	return -1
}

// runID returns the run_id of an invocation's input, or "".
func runID(input []byte) string {
	dec := json.NewDecoder(bytes.NewReader(input))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		if t == "run_id" {
			var s string
			if dec.Decode(&s) != nil || len(s) > 128 {
				return ""
			}
			return s
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}
