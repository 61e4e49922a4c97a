package wasm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// guests are the Go builds of the conformance guest, made once per test
// binary by the first test that needs them (so that fuzzing workers, which
// run no such test, do not build them): dir/command/main.wasm and
// dir/reactor/main.wasm. cache is a compilation cache shared by the tests'
// drivers so that each Go module is compiled once per run.
var guests struct {
	once  sync.Once
	dir   string
	cache string
	err   error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "andromeda-wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	guests.dir = dir
	guests.cache = filepath.Join(dir, "cache")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildGuests(dir string) error {
	env := []string{"GOOS=wasip1", "GOARCH=wasm"}
	if err := sandboxtest.GoBuild(sandboxtest.GoGuest, filepath.Join(dir, "command", "main.wasm"), env); err != nil {
		return err
	}
	return sandboxtest.GoBuild(sandboxtest.GoGuest, filepath.Join(dir, "reactor", "main.wasm"), env, "-buildmode=c-shared")
}

// requireGuests skips (or, in strict CI, fails) a test that needs the Go
// guests when the Go toolchain is missing, and fails it when they did not
// build.
func requireGuests(t testing.TB) {
	t.Helper()
	guests.once.Do(func() { guests.err = buildGuests(guests.dir) })
	sandboxtest.Require(t, !errors.Is(guests.err, sandboxtest.ErrNoGo),
		"building the Go guest (GOOS=wasip1 GOARCH=wasm) needs the go command on PATH")
	if guests.err != nil {
		t.Fatal(guests.err)
	}
}

// goGuest is the directory of the Go guest built as shape ("command" or "reactor").
func goGuest(shape string) string { return filepath.Join(guests.dir, shape) }
