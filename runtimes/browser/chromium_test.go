package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/andromeda-runner/andromeda/runtimes/browser/browsertest"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// The tests below drive a real Chromium, headless, with chromedp: one
// browser for the package's tests, a tab for each page. They skip (fail
// in strict CI) when no Chromium is found.

var chrome struct {
	once  sync.Once
	ctx   context.Context // the browser's first tab, kept open
	err   error
	close func()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chrome.close != nil {
		chrome.close()
	}
	os.Exit(code)
}

// newTab opens a tab of the shared browser, closed when t ends.
func newTab(t testing.TB) context.Context {
	t.Helper()
	path, ok := browsertest.Path()
	sandboxtest.Require(t, ok, "no Chromium: set ANDROMEDA_CHROMIUM or install Debian's chromium package")
	chrome.once.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox) // the tests run as root
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(alloc)
		chrome.ctx = ctx
		chrome.close = func() {
			cancel()
			cancelAlloc()
		}
		chrome.err = chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	})
	if chrome.err != nil {
		t.Fatalf("start Chromium (%s): %v", path, chrome.err)
	}
	tab, cancel := chromedp.NewContext(chrome.ctx)
	t.Cleanup(cancel)
	return tab
}

// open navigates tab to url and waits until runtime id is connected.
func (th *testHub) open(t testing.TB, tab context.Context, url, id string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := th.Wait(ctx, id); err != nil {
		state, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("runtime %s did not connect: %v; the page says: %s", id, err, state)
	}
}

// pageState waits until the page's state is want and returns the reason
// it shows.
func pageState(t testing.TB, tab context.Context, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('state').dataset.state === `+jsString(want), chromedp.WithPollingMutation())); err != nil {
		state, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("the page's state is not %s: %v; the page says: %s", want, err, state)
	}
	reason, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('reason').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	return reason
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// input is an Input object whose message is msg (JSON).
func input(msg string) []byte {
	return []byte(`{"run_id":"r-1","service":"s","trigger":{"kind":"flow"},"message":` + msg + `,"state":{},"config":{}}`)
}

// invokeQueued invokes m on runtime id and, while the runtime is gone,
// waits for it to come back and sends the message again: what a node
// does for a flow whose placement queues its messages.
func invokeQueued(ctx context.Context, th *testHub, id string, m Module, in []byte, gone *atomic.Int64) ([]byte, error) {
	for {
		out, err := th.Invoke(ctx, id, m, in)
		if !errors.Is(err, ErrGone) {
			return out, err
		}
		gone.Add(1)
		if err := th.Wait(ctx, id); err != nil {
			return nil, err
		}
	}
}

// TestBrowserInvoke: a page with a runtime token connects, is listed, and
// runs a module 1,000 times in order, then 1,000 times 16 at once, each
// output once and for its own input.
func TestBrowserInvoke(t *testing.T) {
	tab := newTab(t)
	th := newTestHub(t, Config{})
	th.open(t, tab, th.pageURL("token="+goodToken+"&runtime=inv-1&name=kiosk"), "inv-1")

	rs := th.Runtimes()
	if len(rs) != 1 || rs[0].ID != "inv-1" || rs[0].Name != "kiosk" || !rs[0].Connected ||
		!slices.Equal(rs[0].Languages, []string{Language}) || !strings.Contains(rs[0].Version, "Chrome") || rs[0].Protocol != Protocol {
		t.Fatalf("Runtimes() = %+v, want inv-1 (kiosk) connected, running javascript in Chrome", rs)
	}
	if got, _ := chromedp.Run(tab, chromedp.Evaluate[string](`location.href`)); strings.Contains(got, goodToken) {
		t.Errorf("the address bar still holds the token: %s", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mod := Module{ID: "count", Code: `let seen = 0;
module.exports = async (input) => ({ emit: [{ port: 'out', message: { n: input.message.n, seen: ++seen } }] });`}
	for i := range 1000 {
		out, err := th.Invoke(ctx, "inv-1", mod, input(fmt.Sprintf(`{"n":%d}`, i)))
		if err != nil {
			t.Fatalf("Invoke %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"emit":[{"port":"out","message":{"n":%d,"seen":%d}}]}`, i, i+1); string(out) != want {
			t.Fatalf("Invoke %d = %s, want %s", i, out, want)
		}
	}

	var got sync.Map
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out, err := th.Invoke(ctx, "inv-1", mod, input(fmt.Sprintf(`{"n":%d}`, i)))
				if err != nil {
					t.Errorf("Invoke %d: %v", i, err)
					continue
				}
				var o struct {
					Emit []struct{ Message struct{ N, Seen int } }
				}
				if err := json.Unmarshal(out, &o); err != nil || len(o.Emit) != 1 || o.Emit[0].Message.N != i {
					t.Errorf("Invoke %d = %s, want its own n", i, out)
					continue
				}
				if _, dup := got.LoadOrStore(o.Emit[0].Message.Seen, i); dup {
					t.Errorf("the module ran twice as call %d", o.Emit[0].Message.Seen)
				}
			}
		}()
	}
	for i := range 1000 {
		next <- i
	}
	close(next)
	wg.Wait()
	n := 0
	got.Range(func(any, any) bool { n++; return true })
	if n != 1000 {
		t.Errorf("%d distinct runs, want 1000", n)
	}
	if rs := th.Runtimes(); rs[0].Modules != 1 || rs[0].InFlight != 0 {
		t.Errorf("Runtimes() = %+v, want 1 module and nothing in flight", rs)
	}
}

// TestBrowserBadToken: a page with a bad token, or a token of another
// role, is refused with a reason it shows, does not try again, and is
// never listed; a page without a token does not connect.
func TestBrowserBadToken(t *testing.T) {
	th := newTestHub(t, Config{})
	for _, c := range []struct{ name, fragment, reason string }{
		{"bad", "token=not-a-token&runtime=bad-1", "unauthorized: the token is not valid"},
		{"operator", "token=" + operatorToken + "&runtime=bad-2", "needs a runtime token, not operator"},
		{"none", "runtime=bad-3", "with a token of the runtime role"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := newTab(t)
			if err := chromedp.Do(tab, chromedp.Navigate(th.pageURL(c.fragment))); err != nil {
				t.Fatal(err)
			}
			if reason := pageState(t, tab, "refused"); !strings.Contains(reason, c.reason) {
				t.Errorf("the page shows %q, want %q", reason, c.reason)
			}
			if rs := th.Runtimes(); len(rs) != 0 {
				t.Errorf("Runtimes() = %+v, want none", rs)
			}
		})
	}
}

// TestBrowserPageGoes: the page goes away (navigates elsewhere, is
// reloaded, its tab is closed) while messages are in flight: each of
// those Invokes returns ErrGone at once; the page that comes back in the
// same tab (its session storage) or with the same runtime id is the same
// runtime, and what is sent then runs.
func TestBrowserPageGoes(t *testing.T) {
	tab := newTab(t)
	th := newTestHub(t, Config{})
	if err := chromedp.Do(tab, chromedp.Navigate(th.pageURL("token="+goodToken))); err != nil {
		t.Fatal(err)
	}
	pageState(t, tab, "connected")
	var id string
	for _, info := range th.Runtimes() {
		id = info.ID
	}
	if !strings.HasPrefix(id, "b-") {
		t.Fatalf("Runtimes() = %+v, want one runtime with an id the page made up", th.Runtimes())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hang := Module{ID: "hang", Code: `module.exports = async (input, ctx) => { ctx.log('started ' + input.message); await new Promise(() => {}); };`}
	echo := Module{ID: "echo", Code: `exports.handle = (input) => ({ noop: 'echo ' + input.message });`}

	// goes makes the page go with five invocations in flight, and checks
	// they all end ErrGone, promptly.
	goes := func(t *testing.T, how func()) {
		t.Helper()
		errs := make(chan error, 5)
		for i := range 5 {
			go func() {
				_, err := th.Invoke(ctx, id, hang, input(fmt.Sprint(i)))
				errs <- err
			}()
		}
		for started := 0; started < 5; {
			select {
			case l := <-th.lines:
				if strings.HasPrefix(l, "started ") {
					started++
				}
			case <-ctx.Done():
				t.Fatalf("%d invocations started, want 5", started)
			}
		}
		if info, _ := th.info(id); info.InFlight != 5 {
			t.Errorf("in flight: %d, want 5", info.InFlight)
		}
		t0 := time.Now()
		how()
		for range 5 {
			if err := <-errs; !errors.Is(err, ErrGone) {
				t.Errorf("Invoke = %v, want ErrGone", err)
			}
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("the invocations in flight ended %s after the page went", d)
		}
		if info, _ := th.info(id); info.Connected || info.InFlight != 0 {
			t.Errorf("runtime %s: %+v, want it gone with nothing in flight", id, info)
		}
		if _, err := th.Invoke(ctx, id, echo, input(`"x"`)); !errors.Is(err, ErrGone) {
			t.Errorf("Invoke while the page is away = %v, want ErrGone", err)
		}
	}
	back := func(t *testing.T) {
		t.Helper()
		if err := th.Wait(ctx, id); err != nil {
			t.Fatalf("runtime %s did not come back: %v", id, err)
		}
		out, err := th.Invoke(ctx, id, echo, input(`"back"`))
		if err != nil || string(out) != `{"noop":"echo back"}` {
			t.Errorf("Invoke after the page came back = %s, %v", out, err)
		}
		if rs := th.Runtimes(); len(rs) != 1 || rs[0].ID != id || !rs[0].Connected {
			t.Errorf("Runtimes() = %+v, want %s alone, connected again", rs, id)
		}
	}

	t.Run("navigate-away", func(t *testing.T) {
		goes(t, func() {
			if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
				t.Fatal(err)
			}
		})
		// The same tab, without the fragment: its session storage has the
		// token and the runtime id.
		if err := chromedp.Do(tab, chromedp.Navigate(th.srv.URL+th.cfg.Path)); err != nil {
			t.Fatal(err)
		}
		back(t)
	})
	t.Run("reload", func(t *testing.T) {
		// A reload goes and comes back at once: the invocations in flight
		// end ErrGone, and a caller that waits for the runtime and sends
		// again gets its answer.
		errs := make(chan error, 1)
		go func() {
			_, err := th.Invoke(ctx, id, hang, input(`99`))
			errs <- err
		}()
	wait:
		for {
			select {
			case l := <-th.lines:
				if l == "started 99" {
					break wait
				}
			case err := <-errs:
				t.Fatalf("Invoke = %v before it started", err)
			}
		}
		if err := chromedp.Do(tab, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		if err := <-errs; !errors.Is(err, ErrGone) {
			t.Errorf("Invoke = %v, want ErrGone", err)
		}
		var gone atomic.Int64
		out, err := invokeQueued(ctx, th, id, echo, input(`"reloaded"`), &gone)
		if err != nil || string(out) != `{"noop":"echo reloaded"}` {
			t.Errorf("Invoke after the reload = %s, %v", out, err)
		}
		back(t)
	})
	t.Run("close-tab", func(t *testing.T) {
		goes(t, func() {
			if err := chromedp.Cancel(tab); err != nil {
				t.Fatal(err)
			}
		})
		// A new tab has no session storage: the runtime id comes in the
		// fragment.
		th.open(t, newTab(t), th.pageURL("token="+goodToken+"&runtime="+id), id)
		back(t)
	})
}

// TestBrowserModuleErrors: what a module does wrong comes back as an
// *Error naming the module, or as the context's error; the page lives on.
func TestBrowserModuleErrors(t *testing.T) {
	tab := newTab(t)
	th := newTestHub(t, Config{MaxMessage: 64 << 10, CancelGrace: 100 * time.Millisecond})
	th.open(t, tab, th.pageURL("token="+goodToken+"&runtime=err-1"), "err-1")
	ctx := context.Background()
	for _, c := range []struct {
		name, code string
		err        string // a part of the error, or of the noop with ok
		errCode    string
		ok         bool
		deadline   bool
	}{
		{name: "throws", code: `module.exports = () => { throw new TypeError('boom'); };`, errCode: "error", err: "module throws on browser runtime err-1: boom"},
		{name: "rejects", code: `exports.handle = async () => { throw new Error('later'); };`, errCode: "error", err: "later"},
		{name: "requires", code: `const fs = require('fs'); module.exports = () => ({});`, errCode: "init", err: `module requires did not load: module requires: require("fs")`},
		{name: "syntax", code: `module.exports = () => {`, errCode: "init", err: "module syntax did not load: SyntaxError"},
		{name: "no-handler", code: `exports.other = 1;`, errCode: "init", err: "module no-handler exports neither decide(ctx) nor handle(input)"},
		{name: "returns-string", code: `module.exports = () => 'x';`, errCode: "error", err: "the handler returned string, want an object"},
		{name: "circular", code: `module.exports = () => { const o = {}; o.o = o; return o; };`, errCode: "error", err: "encode output: Converting circular structure to JSON"},
		{name: "too-large", code: `module.exports = () => ({ noop: 'x'.repeat(70000) });`, errCode: "error", err: "exceeds the message limit of 65536 bytes"},
		{name: "never-answers", code: `module.exports = () => new Promise(() => {});`, deadline: true},
		{name: "spins", code: `module.exports = () => { for (;;) {} };`, deadline: true},
		{name: "no-network", ok: true, err: "blocked", code: `module.exports = async () => {
  try { await fetch('/runtime/browser'); return { noop: 'fetched' }; } catch (e) { return { noop: 'blocked: ' + e.message }; }
};`},
		{name: "no-page", ok: true, err: "undefined undefined", code: `module.exports = () => ({ noop: typeof document + ' ' + typeof sessionStorage });`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if c.deadline {
				cctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
			}
			defer cancel()
			out, err := th.Invoke(cctx, "err-1", Module{ID: c.name, Code: c.code}, input(`{}`))
			var me *Error
			switch {
			case c.deadline:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Invoke = %s, %v; want the deadline", out, err)
				}
			case c.ok:
				if err != nil || !strings.Contains(string(out), c.err) {
					t.Errorf("Invoke = %s, %v; want a noop with %q", out, err, c.err)
				}
			case !errors.As(err, &me):
				t.Errorf("Invoke = %s, %v; want an *Error", out, err)
			case me.Module != c.name || me.Code != c.errCode || !strings.Contains(err.Error(), c.err):
				t.Errorf("Invoke = %v (%+v), want code %s with %q", err, me, c.errCode, c.err)
			}
			// The page lives on, and the worker too, or a new one: one
			// that spins is restarted after the cancel's grace, failing
			// what was sent to it meanwhile.
			alive := Module{ID: "alive", Code: `module.exports = () => ({ noop: 'alive' });`}
			out, err = th.Invoke(ctx, "err-1", alive, input(`{}`))
			if c.name == "spins" {
				if !errors.As(err, &me) || !strings.Contains(me.Message, "the module worker was restarted") {
					t.Errorf("Invoke while the worker spins = %s, %v; want it failed by the restart", out, err)
				}
				out, err = th.Invoke(ctx, "err-1", alive, input(`{}`))
			}
			if err != nil || string(out) != `{"noop":"alive"}` {
				t.Errorf("Invoke after it = %s, %v", out, err)
			}
		})
	}
	if info, _ := th.info("err-1"); !info.Connected {
		t.Errorf("runtime err-1: %+v, want it still connected", info)
	}
}

// TestSameAsNodeShim runs each module through the real Node.js shim and
// through the page: the same module loader gives the same output, or the
// same error, for the same code and input.
func TestSameAsNodeShim(t *testing.T) {
	tab := newTab(t)
	th := newTestHub(t, Config{})
	th.open(t, tab, th.pageURL("token="+goodToken+"&runtime=same-1"), "same-1")
	ctx := context.Background() // no deadline: ctx.deadline is null in both
	for _, c := range []struct{ name, code, message string }{
		{"default-function", `module.exports = (input) => ({ noop: 'hi ' + input.message });`, `"there"`},
		{"handle-async-ctx", `exports.handle = async (input, ctx) => {
  await new Promise((r) => setTimeout(r, 1));
  ctx.log('handling');
  return [{ kind: 'log', params: { run: input.run_id, deadline: ctx.deadline, ctx: typeof ctx.log + typeof ctx.usage + (ctx.signal instanceof AbortSignal) } }];
};`, `{}`},
		{"decide", `module.exports = { decide(ctx) { return { emit: [{ topic: 't', message: { kind: ctx.trigger.kind, n: ctx.message.n * 2 } }] }; } };`, `{"n":21}`},
		{"decide-over-handle", `exports.handle = () => ({ noop: 'handle' }); exports.decide = () => ({ noop: 'decide' });`, `{}`},
		{"this-is-exports", `exports.prefix = 'p:'; exports.handle = function (input) { return { noop: this.prefix + input.message }; };`, `"x"`},
		{"nothing", `module.exports = () => {};`, `{}`},
		{"null", `module.exports = async () => null;`, `{}`},
		{"string", `module.exports = () => 'text';`, `{}`},
		{"number", `module.exports = () => 42;`, `{}`},
		{"throws", `module.exports = () => { throw new RangeError('out of range'); };`, `{}`},
		{"throws-string", `module.exports = () => { throw 'plain'; };`, `{}`},
		{"throws-bare", `module.exports = () => { throw Object.create(null); };`, `{}`},
		{"rejects-null", `module.exports = () => Promise.reject(null);`, `{}`},
		{"then-getter", `module.exports = () => ({ get then() { throw new Error('then getter'); } });`, `{}`},
		{"bigint", `module.exports = () => ({ noop: 'x', actions: [{ kind: 'k', params: { n: 10n } }] });`, `{}`},
		{"circular", `module.exports = () => { const c = {}; c.self = c; return { noop: 'x', actions: [{ kind: 'k', params: c }] }; };`, `{}`},
		{"tojson-throws", `module.exports = () => ({ noop: 'x', toJSON() { throw null; } });`, `{}`},
		{"unicode", `module.exports = (input) => ({ noop: Array.from(input.message).reverse().join('') + ' \u2028' });`, `"héllo 🌍 \u0000"`},
		{"numbers", `module.exports = (input) => ({ noop: 'x', actions: [{ kind: 'k', params: [input.message, 0.1 + 0.2, -0, 1e21, NaN] }] });`, `123456789012345678`},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := input(c.message)
			w := startShim(t, "node", c.code)
			nodeOut, nodeErr := w.invoke(t, in)
			pageOut, err := th.Invoke(ctx, "same-1", Module{ID: c.name, Code: c.code}, in)
			var me *Error
			switch {
			case nodeErr == nil && err == nil:
				if string(pageOut) != string(nodeOut) {
					t.Errorf("the page answered %s, the Node.js shim %s", pageOut, nodeOut)
				}
			case nodeErr != nil && errors.As(err, &me):
				if me.Code != nodeErr.Code || me.Message != nodeErr.Message {
					t.Errorf("the page failed with %s %q, the Node.js shim with %s %q", me.Code, me.Message, nodeErr.Code, nodeErr.Message)
				}
			default:
				t.Errorf("the page answered %s, %v; the Node.js shim %s, %+v", pageOut, err, nodeOut, nodeErr)
			}
		})
	}
}

// TestFlowNodeBrowserPython passes 1,000 messages through a Node.js
// worker, a page and a Python worker, 8 at a time, and makes the page go
// while messages are in flight: with a placement that queues, they wait
// for the page to come back; with one that fails over, they go to a
// Node.js worker running the same module. Every message arrives once,
// with what each module added.
func TestFlowNodeBrowserPython(t *testing.T) {
	const n = 1000
	first := `module.exports = (input) => ({ emit: [{ port: 'out', message: { n: input.message.n, via: ['node'] } }] });`
	middle := `module.exports = async (input) => {
  const m = input.message;
  return { emit: [{ port: 'out', message: { n: m.n, via: m.via.concat('js'), sum: m.n * (m.n + 1) / 2 } }] };
};`
	last := "def handle(input):\n    m = input['message']\n    return {'noop': '%d %s %d' % (m['n'], '>'.join(m['via'] + ['python']), m['sum'])}\n"
	for _, placement := range []string{"queue", "failover"} {
		t.Run(placement, func(t *testing.T) {
			a, c := startShim(t, "node", first), startShim(t, "python", last)
			var fallback *shimWorker
			if placement == "failover" {
				fallback = startShim(t, "node", middle)
			}
			tab := newTab(t)
			th := newTestHub(t, Config{})
			id := "flow-" + placement
			url := th.pageURL("token=" + goodToken + "&runtime=" + id)
			th.open(t, tab, url, id)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			b := Module{ID: "middle", Code: middle}

			var (
				done, gone, failedOver atomic.Int64
				outs                   [n]string
				closeOnce              sync.Once
				closed                 = make(chan struct{})
			)
			hop := func(i int) error {
				out, werr := a.invoke(t, input(fmt.Sprintf(`{"n":%d}`, i)))
				if werr != nil {
					return fmt.Errorf("node: %s", werr.Message)
				}
				msg := emitted(t, out)
				in := input(msg)
				out, err := th.Invoke(ctx, id, b, in)
				if errors.Is(err, ErrGone) {
					gone.Add(1)
					if placement == "failover" {
						failedOver.Add(1)
						var werr *wireError
						if out, werr = fallback.invoke(t, in); werr != nil {
							return fmt.Errorf("fallback: %s", werr.Message)
						}
						err = nil
					} else {
						out, err = invokeQueued(ctx, th, id, b, in, &gone)
					}
				}
				if err != nil {
					return err
				}
				out, werr = c.invoke(t, input(emitted(t, out)))
				if werr != nil {
					return fmt.Errorf("python: %s", werr.Message)
				}
				var o struct{ Noop string }
				json.Unmarshal(out, &o)
				if outs[i] != "" {
					return fmt.Errorf("message %d arrived twice", i)
				}
				outs[i] = o.Noop
				// A third of the way, the page goes while messages are in
				// flight; with a queue it comes back in the same tab.
				if done.Add(1) == n/3 {
					closeOnce.Do(func() {
						go func() {
							defer close(closed)
							chromedp.Do(tab, chromedp.Navigate("about:blank"))
							if placement == "queue" {
								chromedp.Do(tab, chromedp.Navigate(th.srv.URL+th.cfg.Path))
							}
						}()
					})
				}
				return nil
			}

			next := make(chan int)
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						if err := hop(i); err != nil {
							t.Errorf("message %d: %v", i, err)
						}
					}
				}()
			}
			for i := range n {
				next <- i
			}
			close(next)
			wg.Wait()
			<-closed
			for i, o := range outs {
				if want := fmt.Sprintf("%d node>js>python %d", i, i*(i+1)/2); o != want {
					t.Errorf("message %d: %q, want %q", i, o, want)
				}
			}
			if gone.Load() == 0 {
				t.Errorf("no message met the page gone")
			}
			if placement == "failover" && failedOver.Load() == 0 {
				t.Errorf("no message failed over")
			}
			t.Logf("%s: %d messages, %d met the page gone, %d failed over", placement, n, gone.Load(), failedOver.Load())
		})
	}
}

// emitted is the message of the one emit of output.
func emitted(t testing.TB, output []byte) string {
	t.Helper()
	var o struct {
		Emit []struct{ Message json.RawMessage }
	}
	if err := json.Unmarshal(output, &o); err != nil || len(o.Emit) != 1 {
		t.Fatalf("output %s: want one emit", output)
	}
	return string(o.Emit[0].Message)
}

// BenchmarkBrowserHop measures one Invoke's round trip to a page and back
// (the hub, the WebSocket, the page, its module worker and a module that
// answers at once) and reports its p50 and p99 (p50-ns, p99-ns), and
// those of each way: to the module (to-p50-ns, to-p99-ns: from the call
// to the module reading the clock) and back (from-p50-ns, from-p99-ns).
// The page's clock has the browser's resolution (100 µs without
// cross-origin isolation), so the one-way figures are that coarse.
func BenchmarkBrowserHop(b *testing.B) {
	tab := newTab(b)
	th := newTestHub(b, Config{})
	th.open(b, tab, th.pageURL("token="+goodToken+"&runtime=bench-1"), "bench-1")
	ctx := context.Background()
	mod := Module{ID: "clock", Code: `module.exports = (input) => ({ noop: String(performance.timeOrigin + performance.now()), emit: [{ port: 'out', message: input.message }] });`}
	in := input(`{"price":101.25,"symbol":"ACME","seq":1}`)
	for range 200 { // load the module and warm the JIT
		if _, err := th.Invoke(ctx, "bench-1", mod, in); err != nil {
			b.Fatal(err)
		}
	}
	rt := make([]time.Duration, 0, b.N)
	to := make([]time.Duration, 0, b.N)
	from := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		out, err := th.Invoke(ctx, "bench-1", mod, in)
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		rt = append(rt, t1.Sub(t0))
		var o struct{ Noop string }
		json.Unmarshal(out, &o)
		ms, err := strconv.ParseFloat(o.Noop, 64)
		if err != nil {
			b.Fatalf("output %s: %v", out, err)
		}
		at := time.UnixMicro(int64(ms * 1000))
		to = append(to, at.Sub(t0))
		from = append(from, t1.Sub(at))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"", rt}, {"to-", to}, {"from-", from}} {
		slices.Sort(m.d)
		b.ReportMetric(float64(m.d[len(m.d)/2].Nanoseconds()), m.name+"p50-ns")
		b.ReportMetric(float64(m.d[len(m.d)*99/100].Nanoseconds()), m.name+"p99-ns")
	}
}
