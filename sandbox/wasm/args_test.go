package wasm

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestCommandArgs: a command guest gets an invocation's argument vector
// (sandbox.WithArgs) as its argv after the program name, in both modes.
func TestCommandArgs(t *testing.T) {
	dir := t.TempDir()
	err := sandboxtest.GoBuild("github.com/andromeda-runner/andromeda/sandbox/wasm/testdata/argv", filepath.Join(dir, "main.wasm"), []string{"GOOS=wasip1", "GOARCH=wasm"})
	sandboxtest.Require(t, !errors.Is(err, sandboxtest.ErrNoGo), "building the argv guest needs the go command on PATH")
	if err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, Config{})
	for _, mode := range []sandbox.Mode{sandbox.ModeCommand, sandbox.ModeServer} {
		dep := deployFile(t, d, filepath.Join(dir, "main.wasm"), sandbox.Spec{Service: "argv", Mode: mode})
		for _, tc := range []struct {
			args []string
			want string
		}{
			{nil, `["argv"]`},
			{[]string{"-l", "two words", ""}, `["argv","-l","two words",""]`},
		} {
			exit, err := dep.Invoke(sandbox.WithArgs(context.Background(), tc.args), []byte(`{}`))
			r := sandbox.Judge(exit)
			if err != nil || r.Outcome != sandbox.Noop || r.Output.Noop != tc.want {
				t.Errorf("%s mode, args %q: %+v, %v; want argv %s", mode, tc.args, r, err, tc.want)
			}
		}
	}
}
