package process

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestThrashIsOutOfMemory runs a Python worker that fills its memory
// limit and then reads a mapped file bigger than what is left, so that
// the kernel keeps evicting its pages and it keeps faulting them back in
// instead of being killed. The driver's watch kills it as out of memory
// after ThrashAfter, saying why; with the watch off, the same invocation
// runs to its deadline, so the guest really thrashes.
func TestThrashIsOutOfMemory(t *testing.T) {
	requireSandbox(t)
	requireLang(t, LangPython)
	dir := sandboxtest.ThrashService(t, filepath.Join("testdata", "thrash", "main.py"))
	for _, tc := range sandboxtest.ThrashCases {
		t.Run(tc.Name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ThrashAfter = tc.After
			d := newDriver(t, cfg)
			dep := deploy(t, d, sandbox.Spec{
				Service: "thrash", Dir: dir, Entry: "main.py", Language: LangPython, Mode: sandbox.ModeServer,
				Limits: sandbox.Limits{Memory: sandboxtest.ThrashLimit, Concurrency: 1, Timeout: tc.Timeout},
			})
			start := time.Now()
			exit, err := invokeOp(context.Background(), dep, sandboxtest.ThrashMessage)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			sandboxtest.CheckThrash(t, tc, exit, took)
			// The pool starts another worker, which answers.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if exit, err := invokeOp(ctx, dep, `{"do":"ping"}`); err != nil || exit.Outcome != sandbox.OK {
				t.Errorf("ping after the kill = %s (%s), %v", exit.Outcome, exit.Detail, err)
			}
		})
	}
}
