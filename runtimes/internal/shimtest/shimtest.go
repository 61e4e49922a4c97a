// Package shimtest starts a language shim's service in the real process
// driver for the shims' own tests, so each shim's test holds only its
// cases. It is for tests; nothing else imports it.
package shimtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// Driver returns a process driver for lang, closed when t ends; it skips t
// (fails it in strict CI) without root or the language's toolchain.
func Driver(t *testing.T, lang string) *process.Driver {
	t.Helper()
	sandboxtest.Require(t, os.Geteuid() == 0, "the process driver's sandbox needs root (namespaces, cgroups)")
	d := process.New(process.Config{
		WorkDir:      filepath.Join(t.TempDir(), "work"),
		CgroupParent: "/andromeda-test-" + lang + "-shim",
		Node:         os.Getenv("ANDROMEDA_TEST_NODE"),
		Python:       os.Getenv("ANDROMEDA_TEST_PYTHON"),
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(func() { d.Close() })
	_, ok := d.Offer().Languages[lang]
	sandboxtest.Require(t, ok, fmt.Sprintf("no %s toolchain: %q", lang, d.Offer().Notes))
	return d
}

// Service deploys source as entry of a warm one-at-a-time service named
// name, stopped when t ends, and returns a function that invokes it with a
// message and fails t if the runner itself fails.
func Service(t *testing.T, d *process.Driver, lang, name, entry, source string) func(message string) sandbox.Result {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "svc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, entry), []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	dep, err := d.Deploy(ctx, sandbox.Spec{Service: name, Dir: dir, Entry: entry,
		Language: lang, Mode: sandbox.ModeServer, Limits: sandbox.Limits{Concurrency: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dep.Stop(context.Background()) })
	return func(message string) sandbox.Result {
		t.Helper()
		in := `{"run_id":"r-1","service":"s","trigger":{"kind":"manual"},"message":` + message + `,"state":{},"config":{}}`
		r, err := sandbox.CallRaw(ctx, dep, []byte(in), 20*time.Second)
		if err != nil {
			t.Fatalf("CallRaw(%.60s) = %v", message, err)
		}
		return r
	}
}

// Worker deploys source with Service and checks the first answer: for an
// empty message the shims' test services answer noop "alive TOKEN", with a
// token the worker made up at start. It returns the call function, the
// token, and a check, for after a case, that the same worker still
// answers, so a case that killed or restarted the worker fails.
func Worker(t *testing.T, d *process.Driver, lang, name, entry, source string) (call func(message string) sandbox.Result, token string, same func(t *testing.T)) {
	t.Helper()
	call = Service(t, d, lang, name, entry, source)
	alive := call(`{}`)
	token, ok := strings.CutPrefix(alive.Output.Noop, "alive ")
	if alive.Outcome != sandbox.Noop || !ok {
		t.Fatalf("first call: %s %q (%s)", alive.Outcome, alive.Output.Noop, alive.Error)
	}
	same = func(t *testing.T) {
		t.Helper()
		if again := call(`{}`); again.Output.Noop != alive.Output.Noop {
			t.Errorf("after it: %s %q (%.300s), want %q from the same worker", again.Outcome, again.Output.Noop, again.Error, alive.Output.Noop)
		}
	}
	return call, token, same
}
