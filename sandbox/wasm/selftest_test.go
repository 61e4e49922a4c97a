package wasm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestSelfTest runs reactors' andromeda_test exports: one that passes, one
// that fails with its message, a reactor without one and a command (no
// test: ran is false).
func TestSelfTest(t *testing.T) {
	t.Parallel()
	d := newDriver(t, Config{})
	for _, c := range []struct {
		module  string
		ran     bool
		wantErr string
	}{
		{"testdata/selftest-pass.wasm", true, ""},
		{"testdata/selftest-fail.wasm", true, "self-test: the answer is not 42"},
		{"testdata/reactor.wasm", false, ""},
		{"echo.wasm", false, ""},
	} {
		t.Run(c.module, func(t *testing.T) {
			dep := deployFile(t, d, c.module, sandbox.Spec{Mode: sandbox.ModeServer})
			ran, err := dep.Test(context.Background())
			if ran != c.ran || (err == nil) != (c.wantErr == "") || err != nil && !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Test() = %v, %v; want %v and error %q", ran, err, c.ran, c.wantErr)
			}
			// The deployment still serves invocations.
			const in = `{"noop":"after the test"}`
			if exit := invoke(t, dep, 5*time.Second, in); exit.Outcome != sandbox.OK || string(exit.Output) != in {
				t.Errorf("Invoke after Test = %s %q (%s)", exit.Outcome, exit.Output, exit.Detail)
			}
		})
	}
}
