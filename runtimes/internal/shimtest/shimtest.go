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
