package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/runtimes/browser/browsertest"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
	"github.com/andromeda-runner/andromeda/ui"
)

func TestMain(m *testing.M) {
	process.MaybeInit() // the process driver re-executes this binary as its sandbox init
	os.Exit(m.Run())
}

// TestHandler: the page, its script and style are served with a policy
// that allows nothing from elsewhere and nothing inline; anything else
// under the prefix is 404, directories and index.html by name included.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(http.StripPrefix("", ui.Handler("/ui/")))
	defer srv.Close()
	for path, want := range map[string]int{
		"/ui/": 200, "/ui/app.js": 200, "/ui/app.css": 200,
		"/ui/index.html": 404, "/ui/nope.js": 404, "/ui/../ui.go": 404, "/ui/static/app.js": 404,
	} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, res.StatusCode, want)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
}

// TestDashboard drives the dashboard in a real Chromium against a real
// node: an operator signs in with the operator token, sees every service,
// fires one, stops and starts it, reads the run (input, output, logs),
// watches runs arrive live, sees a flow as a graph and the nodes; a
// submitter sees its own service and not another's, and has no fire
// button. Every page must load without an error in the browser's console,
// and the token must never be in the page's address. With
// ANDROMEDA_UI_SCREENSHOTS=DIR it writes the pages' screenshots there
// (the README's).
func TestDashboard(t *testing.T) {
	ctx := context.Background()
	n, op, opToken := startNode(t)
	alice, err := op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := op.CreateToken(ctx, "bob", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	asAlice, asBob := api.NewClient(n.Addr(), alice.Secret), api.NewClient(n.Addr(), bob.Secret)
	submit(t, asAlice, "digest", "        print('digesting', text, flush=True)\n")
	submit(t, asBob, "ledger", "")
	submit(t, op, "shout", "")
	flow := "id: pipeline\nversion: 1.0.0\nmodules:\n  - {id: take, service: shout}\n  - {id: hash, service: digest}\nwires:\n  - {from: take, to: hash}\n"
	if _, err := op.ApplyFlow(ctx, "application/yaml", []byte(flow), false); err != nil {
		t.Fatal(err)
	}
	if _, err := op.StartFlow(ctx, "pipeline"); err != nil {
		t.Fatal(err)
	}
	if _, err := op.FireFlow(ctx, "pipeline", api.FlowFireRequest{Message: json.RawMessage(`{"text":"flowing"}`), Wait: "30s"}); err != nil {
		t.Fatal(err)
	}

	b := newBrowser(t, "http://"+n.Addr())
	b.open("/ui/")
	b.wait(`#login #token`)
	b.shot("login")
	// A token the node does not know is refused on the form.
	b.expectNetworkError("/v1/node")
	b.run(chromedp.SendKeys(chromedp.CSS(`#token`), "and_not-a-token"), chromedp.Click(chromedp.CSS(`#login button[type=submit]`)))
	b.waitText("#login-error", "does not accept this token")
	eval[string](b, `document.querySelector('#token').value = ''`)
	b.signIn(opToken)
	b.waitLoaded("#/services")
	b.hasText("#services", "digest", "ledger", "shout")
	b.shot("services")

	// Fire, then stop and start, from the service's page.
	b.visit("#/services/digest")
	b.wait(`#fire`)
	eval[string](b, `document.querySelector('#fire-input').value = '{"text":"from the dashboard"}'`)
	b.run(chromedp.Click(chromedp.CSS(`#fire`)))
	b.wait(`#fire-result a`)
	runID := b.text(`#fire-result a`)
	b.hasText("#fire-result", "ok")
	b.waitText("#service-runs", runID)
	b.shot("service")
	b.run(chromedp.Click(chromedp.CSS(`#stop`)))
	b.wait(`#start`)
	if s, err := op.Service(ctx, "digest"); err != nil || s.Phase != api.PhaseStopped {
		t.Fatalf("after Stop in the dashboard: %s, %v; want stopped", s.Phase, err)
	}
	b.run(chromedp.Click(chromedp.CSS(`#start`)))
	b.wait(`#stop`)
	if s, err := op.Service(ctx, "digest"); err != nil || s.Phase != api.PhaseStarted {
		t.Fatalf("after Start in the dashboard: %s, %v; want started", s.Phase, err)
	}

	// The run: listed, and its detail with the input, output and log.
	b.visit("#/runs")
	b.hasText("#runs", runID)
	b.shot("runs")
	b.visit("#/runs/" + runID)
	b.waitText("#run-logs", "digesting from the dashboard")
	b.hasText("#run-input", `"text": "from the dashboard"`)
	b.hasText("main", "sha256", "Usage", "Cold start")
	b.shot("run")

	// Live: a run fired elsewhere appears as it is stored.
	b.visit("#/live")
	b.waitText("#live-state", "live")
	live, err := op.Fire(ctx, "shout", json.RawMessage(`{"text":"live"}`))
	if err != nil {
		t.Fatal(err)
	}
	b.waitText("#live-events", live.ID)
	b.shot("live")

	b.visit("#/flows")
	b.hasText("main", "pipeline")
	b.visit("#/flows/pipeline")
	b.wait(`#flow-graph g[data-module="take"]`)
	b.wait(`#flow-graph g[data-module="hash"]`)
	b.wait(`#flow-graph path`)
	b.shot("flow")
	b.visit("#/nodes")
	b.hasText("main", "This node")
	b.shot("nodes")

	b.tokenNowhereButSession(opToken)
	b.run(chromedp.Click(chromedp.CSS(`#logout`)))
	b.wait(`#login #token`)
	if kept := eval[string](b, `sessionStorage.getItem('andromeda.token') || ''`); kept != "" {
		t.Fatal("the token stayed in sessionStorage after signing out")
	}

	// A submitter sees its own service only, and no fire button.
	b.signIn(alice.Secret)
	b.visit("#/services")
	b.hasText("#services", "digest")
	b.lacksText("#services", "ledger", "shout")
	b.visit("#/services/digest")
	b.wait(`#stop`)
	if b.exists(`#fire`) {
		t.Error("a submitter's page of its service has a fire button: fire is the operator's")
	}
	b.visit("#/runs")
	b.lacksText("#runs", "shout")
	b.expectNetworkError("/v1/services/ledger")
	b.visit("#/services/ledger")
	b.hasText("main", "Cannot show this page", "404")
	b.tokenNowhereButSession(alice.Secret)
	b.noConsoleErrors()
}

// startNode starts a node of its own for the test and returns it, an
// operator client and the operator token.
func startNode(t testing.TB) (*node.Node, *api.Client, string) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Cache = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Name = "ui-test"
	cfg.Docker.Enabled = false // its self-test makes a container at every start
	n, err := node.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	process, why := false, "not found"
	for _, d := range n.Node(context.Background()).Drivers {
		if d.Name == "process" {
			process, why = d.Enabled, d.Reason
		}
	}
	sandboxtest.Require(t, process, "the process driver is disabled on this host: "+why)
	tok, err := node.OperatorToken(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return n, api.NewClient(n.Addr(), tok), tok
}

// submit submits a Python service called name through c: it hashes the
// text it is given and emits the digest, after the extra lines of its
// handler (indented for the if block they go in).
func submit(t *testing.T, c *api.Client, name, extra string) {
	t.Helper()
	dir := t.TempDir()
	manifest := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: process, language: python, entry: main.py}\nmode: command\n" +
		"triggers:\n  - {kind: manual, input: {text: hello}}\nresources: {memory: 128Mi, timeout: 10s, pids: 16}\ncapabilities: {network: none, actions: [emit]}\n"
	code := "import hashlib\n\n\ndef handle(input):\n    text = (input.get('message') or {}).get('text')\n    if text:\n" + extra +
		"        return {'emit': [{'topic': 'digests', 'message': {'text': text, 'sha256': hashlib.sha256(text.encode()).hexdigest()}}]}\n" +
		"    return {'noop': 'no text given'}\n"
	for f, body := range map[string]string{"andromeda.yaml": manifest, "main.py": code} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := archive.Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(context.Background(), b); err != nil {
		t.Fatalf("submit %s: %v", name, err)
	}
}

// browser is a Chromium tab on the dashboard that records what the
// browser reports as an error: console errors, uncaught exceptions and
// failed loads (a script the policy blocked, a request that failed).
type browser struct {
	t    testing.TB
	ctx  context.Context
	base string

	mu       sync.Mutex
	errors   []string
	expected map[string]int // URLs whose failed requests a step expects, and how many
	shots    string
}

func newBrowser(t testing.TB, base string) *browser {
	b := &browser{t: t, ctx: browsertest.Browser(t), base: base, shots: os.Getenv("ANDROMEDA_UI_SCREENSHOTS"), expected: map[string]int{}}
	err := chromedp.Listen(b.ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				msg = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
			}
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				msg = "log (" + string(ev.Entry.Source) + "): " + ev.Entry.Text + " " + ev.Entry.URL
			}
		}
		if msg == "" {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		for u, left := range b.expected {
			if left > 0 && strings.Contains(msg, u) {
				b.expected[u]--
				return
			}
		}
		b.errors = append(b.errors, msg)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, enable := range []cdp.Command[cdp.Empty, cdp.Empty]{runtime.Enable, cdplog.Enable} {
		if _, err := chromedp.Call(b.ctx, enable, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	b.run(chromedp.EmulateViewport(1280, 860))
	return b
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("in the browser: %v; errors it reported: %v", err, b.reported())
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		b.t.Fatalf("in the browser: %s: %v; errors it reported: %v", expr, err, b.reported())
	}
	return v
}

func (b *browser) reported() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.errors)
}

func (b *browser) open(path string) { b.t.Helper(); b.run(chromedp.Navigate(b.base + path)) }

// visit moves to another page of the dashboard, as a click on a link does.
func (b *browser) visit(hash string) {
	b.t.Helper()
	eval[string](b, fmt.Sprintf("location.hash = %q", hash))
	b.waitLoaded(hash)
}

func (b *browser) wait(sel string) {
	b.t.Helper()
	b.run(chromedp.WaitReady(chromedp.CSS(sel)))
}

func (b *browser) waitLoaded(hash string) {
	b.t.Helper()
	b.wait(fmt.Sprintf(`body[data-loaded=%q]`, hash))
}

func (b *browser) signIn(token string) {
	b.t.Helper()
	b.wait(`#login #token`)
	b.run(chromedp.SendKeys(chromedp.CSS(`#token`), token), chromedp.Click(chromedp.CSS(`#login button[type=submit]`)))
	b.wait(`#logout:not([hidden])`)
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`document.querySelector(%q)?.innerText ?? ''`, sel))
}

func (b *browser) exists(sel string) bool {
	b.t.Helper()
	return eval[bool](b, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
}

func (b *browser) hasText(sel string, want ...string) {
	b.t.Helper()
	got := b.text(sel)
	for _, w := range want {
		if !strings.Contains(got, w) {
			b.t.Errorf("%s does not say %q; it says:\n%s", sel, w, got)
		}
	}
}

func (b *browser) lacksText(sel string, unwanted ...string) {
	b.t.Helper()
	got := b.text(sel)
	for _, w := range unwanted {
		if strings.Contains(got, w) {
			b.t.Errorf("%s says %q, which it must not show; it says:\n%s", sel, w, got)
		}
	}
}

// waitText waits up to 30 s for the element sel to say want.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 40*time.Second)
	defer cancel()
	expr := fmt.Sprintf(`(document.querySelector(%q)?.textContent || '').includes(%q)`, sel, want)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		b.t.Fatalf("%s does not say %q after 30 s (%v); it says:\n%s\nerrors the browser reported: %v", sel, want, err, b.text(sel), b.reported())
	}
}

// expectNetworkError lets the next steps fail one request to url
// without counting it as a page error (a refused token, the submitter's
// look at another's service).
func (b *browser) expectNetworkError(url string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expected[url]++
}

// tokenNowhereButSession checks the token is in the tab's sessionStorage
// and in neither the address, the history's entry, localStorage nor a
// cookie.
func (b *browser) tokenNowhereButSession(token string) {
	b.t.Helper()
	where := eval[[]string](b, fmt.Sprintf(`[
		location.href.includes(%[1]q) ? 'the address' : '',
		JSON.stringify(history.state || '').includes(%[1]q) ? 'the history' : '',
		JSON.stringify(localStorage).includes(%[1]q) ? 'localStorage' : '',
		document.cookie.includes(%[1]q) ? 'a cookie' : '',
		sessionStorage.getItem('andromeda.token') === %[1]q ? '' : 'not in sessionStorage',
	].filter(Boolean)`, token))
	if len(where) > 0 {
		b.t.Errorf("the token: %s", strings.Join(where, ", "))
	}
	hist, err := chromedp.Call(b.ctx, page.GetNavigationHistory, cdp.Empty{})
	if err != nil {
		b.t.Fatal(err)
	}
	var entries []string
	for _, e := range hist.Entries {
		entries = append(entries, e.URL)
	}
	if i := slices.IndexFunc(entries, func(u string) bool { return strings.Contains(u, token) }); i >= 0 {
		b.t.Errorf("the browser's history has the token: %s", entries[i])
	}
}

func (b *browser) noConsoleErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		b.t.Errorf("the browser reported: %s", e)
	}
}

// shot writes a screenshot of the page to ANDROMEDA_UI_SCREENSHOTS/name.png
// when that is set.
func (b *browser) shot(name string) {
	b.t.Helper()
	if b.shots == "" {
		return
	}
	eval[bool](b, `document.getElementById('toast').hidden = true`)
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if err = os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// BenchmarkDashboardPages: how long a page of the dashboard takes to show
// in Chromium once its address changes (its API calls, the JSON, the
// table built), timed inside the page: the services page with 100
// services and the runs page with its 50 newest runs, p50 and p99; and
// beside them the services page's API call alone, from Go.
func BenchmarkDashboardPages(b *testing.B) {
	ctx := context.Background()
	n, op, tok := startNode(b)
	echo, err := os.ReadFile(filepath.Join("..", "sandbox", "wasm", "echo.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	names := make(chan string, 100)
	for i := range 100 {
		names <- fmt.Sprintf("svc-%03d", i)
	}
	close(names)
	for range 8 {
		wg.Go(func() {
			for name := range names {
				dir := b.TempDir()
				m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: echo.wasm}\nmode: command\n" +
					"triggers:\n  - {kind: manual}\nresources: {memory: 16Mi, timeout: 5s}\ncapabilities: {network: none}\n"
				os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644)
				os.WriteFile(filepath.Join(dir, "echo.wasm"), echo, 0o644)
				a, err := archive.Pack(dir)
				if err == nil {
					_, err = op.Submit(ctx, a)
				}
				if err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i := range 50 {
		op.Fire(ctx, fmt.Sprintf("svc-%03d", i), json.RawMessage(`{}`))
	}
	br := newBrowser(b, "http://"+n.Addr())
	br.open("/ui/")
	br.signIn(tok)
	br.waitLoaded("#/services")
	for _, page := range []string{"#/services", "#/runs"} {
		b.Run(page[2:], func(b *testing.B) {
			var took []float64
			for b.Loop() {
				br.visit("#/nodes")
				took = append(took, eval[float64](br, fmt.Sprintf(`new Promise(done => {
					const start = performance.now();
					location.hash = %q;
					const check = () => document.body.dataset.loaded === %[1]q ? done(performance.now() - start) : requestAnimationFrame(check);
					check();
				})`, page), chromedp.EvalAwaitPromise))
			}
			reportMs(b, took)
		})
	}
	// The floor, same run: the API call the services page makes, from Go.
	b.Run("api-services", func(b *testing.B) {
		var took []float64
		for b.Loop() {
			start := time.Now()
			if _, err := op.Services(ctx); err != nil {
				b.Fatal(err)
			}
			took = append(took, float64(time.Since(start).Microseconds())/1000)
		}
		reportMs(b, took)
	})
}

// reportMs reports the p50 and p99 of took, in milliseconds.
func reportMs(b *testing.B, took []float64) {
	slices.Sort(took)
	b.ReportMetric(took[len(took)/2], "p50-ms")
	b.ReportMetric(took[len(took)*99/100], "p99-ms")
}
