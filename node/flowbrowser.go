package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/flow"
	"github.com/andromeda-runner/andromeda/runtimes/browser"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// Flow modules placed on a browser runtime (runtime: browser/ID). A page
// runs the same module code as the Node.js shim, so a module whose
// service is Node.js code runs there: its message is one invocation on
// the page (browser.Hub.Invoke) with the run's input as the service's
// worker would get it, and the run is recorded like any module run of
// the service (its driver shown as browser, its flow step naming the
// runtime). While no page of the runtime is connected, the module's
// worker waits for one and its messages wait in its queue, in order,
// bounded like every module's (the flow takes no more of its queue once
// its window is full): when_gone: queue, the default. With when_gone:
// failover they run where the module's service runs until a page is back.
//
// A page that goes away while it runs a message (closed, reloaded, its
// network lost) may or may not have run it: the run is not recorded, and
// the message is sent again, to the page when it is back or, failing
// over, to the service. So no message is lost, and each goes on through
// the flow once; the module's code may have run twice for it.

// errPlacementGone is the error of a module run whose browser runtime went
// away before it answered: nothing is recorded, and the flow engine sends
// the message again.
var errPlacementGone = errors.New("the module's browser runtime went away before it answered")

// maxBrowserCode bounds the code a module sends to a page.
const maxBrowserCode = 4 << 20

// browserPlacement is a module's placement on a browser runtime.
type browserPlacement struct {
	runtime  string // browser/ID, as listed
	id       string // ID: the page's runtime id
	failover bool   // when_gone: failover

	mu     sync.Mutex
	digest string // of the service whose code mod holds
	mod    browser.Module
	away   bool // the worker found the page away (logged once per absence)
}

// newBrowserPlacement is m's placement, or nil when it runs where its
// service runs.
func newBrowserPlacement(m flow.Module) *browserPlacement {
	if !m.OnBrowser() {
		return nil
	}
	return &browserPlacement{runtime: m.Runtime, id: strings.TrimPrefix(m.Runtime, flow.BrowserPrefix), failover: m.WhenGone == flow.WhenGoneFailover}
}

// module is what the page runs for module m of flow: the entry file of
// service d, read again when the service changed.
func (p *browserPlacement) module(flowID, moduleID string, d *deployed) (browser.Module, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.digest == d.rec.Digest && p.mod.Code != "" {
		return p.mod, nil
	}
	path := filepath.Join(d.dir, d.manifest.Runtime.Entry)
	fi, err := os.Stat(path)
	if err != nil {
		return browser.Module{}, fmt.Errorf("read the code of service %s for %s: %w", d.rec.Name, p.runtime, err)
	}
	if fi.Size() > maxBrowserCode {
		return browser.Module{}, fmt.Errorf("the code of service %s (%s, %d bytes) is over the %d MiB a browser runtime is sent", d.rec.Name, d.manifest.Runtime.Entry, fi.Size(), maxBrowserCode>>20)
	}
	code, err := os.ReadFile(path)
	if err != nil {
		return browser.Module{}, fmt.Errorf("read the code of service %s for %s: %w", d.rec.Name, p.runtime, err)
	}
	p.digest, p.mod = d.rec.Digest, browser.Module{ID: flowID + "/" + moduleID, Code: string(code)}
	return p.mod, nil
}

// placedDeployment is a module placed on a browser runtime as a
// sandbox.Deployment: each invocation runs on the page.
type placedDeployment struct {
	hub *browser.Hub
	p   *browserPlacement
	mod browser.Module
}

// Invoke runs the module on the page. A page that is not connected, or
// goes away before it answers, is errPlacementGone.
func (pd *placedDeployment) Invoke(ctx context.Context, input []byte) (sandbox.Exit, error) {
	if done, exit, err := sandbox.Precheck(ctx, pd.mod.ID, false); done {
		return exit, err
	}
	start := time.Now()
	out, err := pd.hub.Invoke(ctx, pd.p.id, pd.mod, input)
	usage := sandbox.Usage{Wall: time.Since(start)}
	var perr *browser.Error
	switch {
	case err == nil:
		return sandbox.Exit{Outcome: sandbox.OK, Output: out, Usage: usage}, nil
	case errors.As(err, &perr):
		// As the process driver tells a worker's error answer.
		exit := sandbox.Exit{Outcome: sandbox.Crashed, Detail: perr.Message, Usage: usage}
		switch perr.Code {
		case "oom":
			exit.Outcome = sandbox.OOM
		case "error", "":
		default:
			exit.Detail = perr.Code + ": " + perr.Message
		}
		if perr.Stack != "" && !strings.Contains(exit.Detail, perr.Stack) {
			exit.Detail += "\n" + perr.Stack
		}
		return exit, nil
	case errors.Is(err, browser.ErrGone), errors.Is(err, browser.ErrClosed):
		return sandbox.Exit{Usage: usage}, fmt.Errorf("%s: %w: %w", pd.p.runtime, errPlacementGone, err)
	case errors.Is(err, context.DeadlineExceeded):
		return sandbox.Exit{Outcome: sandbox.Timeout, Detail: "the page did not answer before the run's deadline", Usage: usage}, nil
	case ctx.Err() != nil:
		return sandbox.Exit{Usage: usage}, ctx.Err()
	default: // too large, invalid: the page was not given it
		return sandbox.Exit{Outcome: sandbox.Rejected, Detail: err.Error(), Usage: usage}, nil
	}
}

// Stop does nothing: the page keeps its modules until it goes.
func (pd *placedDeployment) Stop(context.Context) error { return nil }

type placedKey struct{}

// withPlacement has a run in ctx go to pd instead of its service's
// deployment.
func withPlacement(ctx context.Context, pd *placedDeployment) context.Context {
	return context.WithValue(ctx, placedKey{}, pd)
}

// placedOn is the placement withPlacement put in ctx, or nil.
func placedOn(ctx context.Context) *placedDeployment {
	pd, _ := ctx.Value(placedKey{}).(*placedDeployment)
	return pd
}

// place is the context module m's run of a message goes in, and, in the
// step, where it ran: on its browser runtime when a page of it is
// connected; when none is, after waiting for one (queue), or where its
// service runs (failover, said in note). errHalted: the flow stopped
// while it waited.
func (e *flowExec) place(ctx context.Context, m *moduleExec, d *deployed) (_ context.Context, runtime, note string, err error) {
	p := m.browser
	hub := e.n.browser
	if hub == nil {
		if p.failover {
			return ctx, "", "failed over: the browser runtime is disabled on this node (browser.enabled)", nil
		}
		return nil, "", "", fmt.Errorf("module %s is placed on %s, but the browser runtime is disabled on this node (browser.enabled)", m.id, p.runtime)
	}
	if !hub.Connected(p.id) {
		if p.failover {
			return ctx, "", "failed over: no page of " + p.runtime + " is connected", nil
		}
		p.mu.Lock()
		if !p.away {
			p.away = true
			e.log.Info("module waits for its browser runtime", "module", m.id, "runtime", p.runtime, "waiting", m.depth()+1)
		}
		p.mu.Unlock()
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-e.halt:
				cancel()
			case <-wctx.Done():
			}
		}()
		err := hub.Wait(wctx, p.id)
		cancel()
		if err != nil {
			return nil, "", "", errHalted // the flow or the node stops: the message runs at the next start
		}
		p.mu.Lock()
		if p.away {
			p.away = false
			e.log.Info("module's browser runtime is back", "module", m.id, "runtime", p.runtime)
		}
		p.mu.Unlock()
	}
	mod, err := p.module(e.id, m.id, d)
	if err != nil {
		return nil, "", "", err
	}
	return withPlacement(ctx, &placedDeployment{hub: hub, p: p, mod: mod}), p.runtime, "", nil
}

// awaitingPage says a module of e would wait for its browser page
// (when_gone: queue, no page connected): a stop that drained would wait
// for it.
func (e *flowExec) awaitingPage() bool {
	for _, m := range e.modules {
		if e.pageAway(m) != "" {
			return true
		}
	}
	return false
}

// pageAway says why module m, placed on a browser runtime with
// when_gone: queue, cannot run a message now (no page of it connected),
// or "".
func (e *flowExec) pageAway(m *moduleExec) string {
	p := m.browser
	if p == nil || p.failover || (e.n.browser != nil && e.n.browser.Connected(p.id)) {
		return ""
	}
	return "no page of " + p.runtime + " is connected (when_gone: queue): its held messages stay held until one is"
}
