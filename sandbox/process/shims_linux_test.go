package process

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// shimCase is one service for a language shim and what invoking it gives.
type shimCase struct {
	name    string
	files   map[string]string
	entry   string
	message string // the input's message (JSON)
	outcome sandbox.Outcome
	output  string // a substring of the raw output (ok, noop)
	detail  string // a substring of the detail (crashed, oom)
	logs    string // a line Spec.Log must receive
	deploy  string // a substring of Deploy's error: the service must not deploy
}

var nodeCases = []shimCase{
	{name: "cjs-handle", entry: "index.js", files: map[string]string{"index.js": `exports.handle = (input) => ({ noop: 'got ' + input.message });`},
		message: `"hi"`, outcome: sandbox.Noop, output: `"noop":"got hi"`},
	{name: "cjs-module-exports-decide-array", entry: "index.js", files: map[string]string{"index.js": `module.exports = { decide(ctx) { return [{ kind: 'log', params: { run: ctx.run_id } }]; } };`},
		outcome: sandbox.OK, output: `"actions":[{"kind":"log","params":{"run":"r-1"}}]`},
	{name: "esm-async-decide", entry: "main.mjs", files: map[string]string{"main.mjs": `export async function decide(ctx) { await new Promise((r) => setTimeout(r, 5)); ctx.log('deciding'); return { noop: 'esm ' + ctx.trigger.kind }; }`},
		outcome: sandbox.Noop, output: `"noop":"esm manual"`, logs: "deciding"},
	{name: "esm-by-package-type", entry: "index.js", files: map[string]string{"package.json": `{"type": "module"}`, "index.js": `export default { handle: (input) => ({ noop: 'default export' }) };`},
		outcome: sandbox.Noop, output: "default export"},
	{name: "console-goes-to-logs", entry: "index.js", files: map[string]string{"index.js": `exports.handle = () => { console.log('printed'); process.stdout.write('written\n'); return { noop: 'quiet' }; };`},
		outcome: sandbox.Noop, output: "quiet", logs: "printed"},
	{name: "rejected-promise", entry: "index.js", files: map[string]string{"index.js": `exports.handle = async () => { throw new TypeError('bad thing'); };`},
		outcome: sandbox.Crashed, detail: "TypeError: bad thing"},
	{name: "no-handler", entry: "index.js", files: map[string]string{"index.js": `exports.other = 1;`},
		deploy: "exports neither decide(ctx) nor handle(input)"},
	{name: "syntax-error", entry: "index.js", files: map[string]string{"index.js": `exports.handle = () => {`},
		deploy: "SyntaxError"},
}

var pythonCases = []shimCase{
	{name: "handle", entry: "main.py", files: map[string]string{"main.py": "def handle(input):\n    return {'noop': 'got ' + input['message']}\n"},
		message: `"hi"`, outcome: sandbox.Noop, output: `"noop":"got hi"`},
	{name: "decide-list", entry: "main.py", files: map[string]string{"main.py": "def decide(ctx):\n    ctx.log('deciding')\n    return [{'kind': 'log', 'params': {'run': ctx.run_id}}]\n"},
		outcome: sandbox.OK, output: `"actions":[{"kind":"log","params":{"run":"r-1"}}]`, logs: "deciding"},
	{name: "async-handle", entry: "main.py", files: map[string]string{"main.py": "import asyncio\n\nasync def handle(input, ctx):\n    await asyncio.sleep(0.005)\n    return {'noop': 'async ' + input['trigger']['kind']}\n"},
		outcome: sandbox.Noop, output: `"noop":"async manual"`},
	{name: "print-goes-to-logs", entry: "main.py", files: map[string]string{"main.py": "def handle(input):\n    print('printed')\n    return {'noop': 'quiet'}\n"},
		outcome: sandbox.Noop, output: "quiet", logs: "printed"},
	{name: "exception", entry: "main.py", files: map[string]string{"main.py": "def handle(input):\n    raise ValueError('bad thing')\n"},
		outcome: sandbox.Crashed, detail: "ValueError: bad thing"},
	{name: "memory-error", entry: "main.py", files: map[string]string{"main.py": "def handle(input):\n    raise MemoryError('too big')\n"},
		outcome: sandbox.OOM, detail: "too big"},
	{name: "nan-output", entry: "main.py", files: map[string]string{"main.py": "def handle(input):\n    return {'noop': 'x', 'actions': [{'kind': 'k', 'params': float('nan')}]}\n"},
		outcome: sandbox.Crashed, detail: "encode output"},
	{name: "no-handler", entry: "main.py", files: map[string]string{"main.py": "X = 1\n"},
		deploy: "defines neither decide(ctx) nor handle(input)"},
	{name: "import-error", entry: "main.py", files: map[string]string{"main.py": "import no_such_module\n"},
		deploy: "No module named 'no_such_module'"},
}

// TestShims runs small services through the Node.js and Python shims: the
// function shapes, module kinds, logs, and how errors map to outcomes.
func TestShims(t *testing.T) {
	requireSandbox(t)
	d := newDriver(t, testConfig())
	for lang, cases := range map[string][]shimCase{LangNode: nodeCases, LangPython: pythonCases} {
		t.Run(lang, func(t *testing.T) {
			requireLang(t, lang)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					dir := filepath.Join(t.TempDir(), "svc")
					if err := writeService(dir, c.files); err != nil {
						t.Fatal(err)
					}
					var mu sync.Mutex
					var logs []string
					spec := sandbox.Spec{Service: "shim-" + c.name, Dir: dir, Entry: c.entry, Language: lang, Mode: sandbox.ModeServer,
						Limits: sandbox.Limits{Concurrency: 1}, Log: func(l string) { mu.Lock(); logs = append(logs, l); mu.Unlock() }}
					if c.deploy != "" {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						dep, err := d.Deploy(ctx, spec)
						if err == nil {
							dep.Stop(ctx)
							t.Fatalf("Deploy = nil, want an error containing %q", c.deploy)
						}
						if !strings.Contains(err.Error(), c.deploy) {
							t.Fatalf("Deploy = %v, want an error containing %q", err, c.deploy)
						}
						return
					}
					dep := deploy(t, d, spec)
					msg := c.message
					if msg == "" {
						msg = `{}`
					}
					in := `{"run_id":"r-1","service":"s","trigger":{"kind":"manual"},"message":` + msg + `,"state":{},"config":{}}`
					r, err := sandbox.CallRaw(context.Background(), dep, []byte(in), 10*time.Second)
					if err != nil {
						t.Fatal(err)
					}
					if r.Outcome != c.outcome || !strings.Contains(string(r.Raw), c.output) || !strings.Contains(r.Error, c.detail) {
						t.Errorf("outcome %s, output %s, detail %q; want %s, output with %q, detail with %q", r.Outcome, r.Raw, r.Error, c.outcome, c.output, c.detail)
					}
					if c.logs != "" {
						deadline := time.Now().Add(time.Second)
						for {
							mu.Lock()
							found := slices.ContainsFunc(logs, func(l string) bool { return strings.Contains(l, c.logs) })
							mu.Unlock()
							if found {
								break
							}
							if time.Now().After(deadline) {
								t.Errorf("Spec.Log got %q, want a line with %q", logs, c.logs)
								break
							}
							time.Sleep(5 * time.Millisecond)
						}
					}
				})
			}
		})
	}
}

// TestCancel checks that cancelling an invocation stops it: a handler
// waiting on a promise or an asyncio task is cancelled in its worker, which
// lives on; a handler that does not stop (a Python loop) gets its worker
// killed after the grace period.
func TestCancel(t *testing.T) {
	requireSandbox(t)
	// A generous grace, so a shim that answers the cancel is never killed
	// only because this 2-core machine was busy.
	cfg := testConfig()
	cfg.CancelGrace = 2 * time.Second
	d := newDriver(t, cfg)
	for _, c := range []struct {
		lang, name string
		files      map[string]string
		entry      string
		survives   bool
	}{
		{LangNode, "promise", map[string]string{"index.js": "exports.handle = (input, ctx) => new Promise((resolve) => { ctx.signal.addEventListener('abort', () => resolve({ noop: 'aborted' })); });"}, "index.js", true},
		{LangPython, "asyncio", map[string]string{"main.py": "import asyncio\n\nasync def handle(input):\n    await asyncio.sleep(3600)\n"}, "main.py", true},
		{LangPython, "busy-loop", map[string]string{"main.py": "def handle(input):\n    while True:\n        pass\n"}, "main.py", false},
		{LangExec, "ignores-ctx", nil, "", false},
	} {
		t.Run(c.lang+"-"+c.name, func(t *testing.T) {
			requireLang(t, c.lang)
			dir := filepath.Join(t.TempDir(), "svc")
			msg := `{}`
			if c.lang == LangExec {
				dir, c.entry = guest(t, LangExec)
				msg = `{"do":"sleep"}`
			} else if err := writeService(dir, c.files); err != nil {
				t.Fatal(err)
			}
			dep := deploy(t, d, sandbox.Spec{Service: "cancel", Dir: dir, Entry: c.entry, Language: c.lang, Limits: sandbox.Limits{Concurrency: 1}})
			before := dep.spawned.Load()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			_, err := dep.Invoke(ctx, []byte(`{"run_id":"r","message":`+msg+`}`))
			if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
				t.Fatalf("Invoke with a cancelled ctx = %v after %v, want context.Canceled at once", err, time.Since(start))
			}
			// Wait on the event, not the clock: a worker that answers the
			// cancel ends the invocation (nothing in flight, no new
			// worker); one that ignores it is killed after the grace and
			// replaced, which the spawn counter shows.
			deadline := time.Now().Add(d.cfg.CancelGrace + 10*time.Second)
			if c.survives {
				for dep.inFlight() != 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := dep.inFlight(); n != 0 {
					t.Fatalf("%d invocations still in flight after the cancel", n)
				}
				if !dep.allAlive() {
					t.Fatal("the worker died after answering the cancel")
				}
			} else {
				for dep.spawned.Load() == before && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
			}
			if survived := dep.spawned.Load() == before; survived != c.survives {
				t.Errorf("worker survived the cancel: %v, want %v (workers started: %d before, %d after)", survived, c.survives, before, dep.spawned.Load())
			}
		})
	}
}

// allAlive reports whether the deployment has live workers and none of them
// is dead or dying.
func (d *deployment) allAlive() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for w := range d.live {
		w.mu.Lock()
		dead := w.dead
		w.mu.Unlock()
		if dead {
			return false
		}
	}
	return len(d.live) > 0
}
