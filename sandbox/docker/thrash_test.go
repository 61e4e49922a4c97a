package docker

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestThrashIsOutOfMemory runs the process driver's thrash guest in the
// Python runtime image: it fills its container's memory limit and keeps
// reading a mapped file bigger than what is left, so that the kernel
// evicts and it faults back in page after page instead of being killed.
// The driver's watch kills the container as out of memory after
// ThrashAfter, saying why; with the watch off the same invocation runs to
// its deadline, so the guest really thrashes. (A container behind
// fuse-overlayfs that fills its limit reads its own code back this way,
// slowly enough under load to outlive its deadline.)
func TestThrashIsOutOfMemory(t *testing.T) {
	dir := sandboxtest.ThrashService(t, filepath.Join("..", "process", "testdata", "thrash", "main.py"))
	var msg map[string]any
	if err := json.Unmarshal([]byte(sandboxtest.ThrashMessage), &msg); err != nil {
		t.Fatal(err)
	}
	for _, tc := range sandboxtest.ThrashCases {
		t.Run(tc.Name, func(t *testing.T) {
			cfg := archiveConfig(t, lang.Python)
			cfg.Process.ThrashAfter = tc.After
			d := newDriver(t, cfg)
			dep := deploy(t, d, sandbox.Spec{
				Service: "thrash", Dir: dir, Entry: "main.py", Language: lang.Python, Mode: sandbox.ModeServer,
				Limits: sandbox.Limits{Memory: sandboxtest.ThrashLimit, Concurrency: 1, Timeout: tc.Timeout},
			})
			start := time.Now()
			exit, err := dep.Invoke(context.Background(), input(t, "thrash", msg))
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			sandboxtest.CheckThrash(t, tc, exit, took)
			// The pool starts another container, which answers.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if exit, err := dep.Invoke(ctx, input(t, "ping", map[string]any{"do": "ping"})); err != nil || exit.Outcome != sandbox.OK {
				t.Errorf("ping after the kill = %s (%s), %v", exit.Outcome, exit.Detail, err)
			}
		})
	}
}
