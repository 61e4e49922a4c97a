package process

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestServiceSelfTest runs services' own self-tests through the runtime
// protocol's test message: test() in the Node.js and Python shims passing,
// failing with its message and missing, in server and command mode; a Go
// worker without Options.Test does not accept test messages (no test).
func TestServiceSelfTest(t *testing.T) {
	requireSandbox(t)
	d := sharedDriver(t)
	cases := []struct {
		lang, name, entry, src string
		ran                    bool
		err                    string
		command                bool // in command mode too
	}{
		{LangNode, "pass", "index.js", "exports.handle = () => ({noop: 'x'});\nexports.test = async () => { await new Promise((r) => setTimeout(r, 5)); };\n", true, "", false},
		{LangNode, "fail", "index.js", "exports.handle = () => ({noop: 'x'});\nexports.test = () => { throw new Error('the answer is not 42'); };\n", true, "the answer is not 42", true},
		{LangNode, "none", "index.js", "exports.handle = () => ({noop: 'x'});\n", false, "", false},
		{LangPython, "pass", "main.py", "def handle(input):\n    return {'noop': 'x'}\n\ndef test():\n    pass\n", true, "", true},
		{LangPython, "fail", "main.py", "def handle(input):\n    return {'noop': 'x'}\n\ndef test():\n    raise AssertionError('the answer is not 42')\n", true, "AssertionError: the answer is not 42", false},
		{LangPython, "async-fail", "main.py", "async def handle(input):\n    return {'noop': 'x'}\n\nasync def test():\n    raise ValueError('async says no')\n", true, "async says no", false},
		{LangPython, "none", "main.py", "def handle(input):\n    return {'noop': 'x'}\n", false, "", false},
	}
	for _, c := range cases {
		for _, mode := range []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand} {
			if mode == sandbox.ModeCommand && !c.command {
				continue
			}
			t.Run(c.lang+"/"+c.name+"/"+string(mode), func(t *testing.T) {
				t.Parallel()
				requireLang(t, c.lang)
				dir := filepath.Join(t.TempDir(), "svc")
				if err := writeService(dir, map[string]string{c.entry: c.src}); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				dep, err := d.Deploy(ctx, sandbox.Spec{Service: "selftest-" + c.name, Dir: dir, Entry: c.entry, Language: c.lang, Mode: mode,
					Limits: sandbox.Limits{Concurrency: 1, Timeout: 10 * time.Second}})
				if err != nil {
					t.Fatal(err)
				}
				defer dep.Stop(context.Background())
				ran, err := dep.(sandbox.Tester).Test(ctx)
				if ran != c.ran || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
					t.Errorf("Test() = %v, %v; want %v and error %q", ran, err, c.ran, c.err)
				}
				// The deployment serves invocations after its test.
				r, err := sandbox.CallRaw(ctx, dep, []byte(`{"run_id":"r","service":"s","trigger":{"kind":"manual"},"state":{},"config":{}}`), 10*time.Second)
				if err != nil || r.Outcome != sandbox.Noop {
					t.Errorf("invoke after Test = %+v, %v", r, err)
				}
			})
		}
	}
	t.Run("go-without-test", func(t *testing.T) {
		t.Parallel()
		dir, entry := guest(t, LangExec)
		dep, err := d.Deploy(context.Background(), sandbox.Spec{Service: "selftest-go", Dir: dir, Entry: entry, Language: LangExec, Limits: sandbox.Limits{Concurrency: 1}})
		if err != nil {
			t.Fatal(err)
		}
		defer dep.Stop(context.Background())
		if ran, err := dep.(sandbox.Tester).Test(context.Background()); ran || err != nil {
			t.Errorf("Test() of a worker that accepts no test = %v, %v; want false, nil", ran, err)
		}
	})
}
