// Package gobuild compiles Go services to WebAssembly (GOOS=wasip1) with the
// host's Go toolchain, for `andromeda submit` of a Go service that has no
// compiled entry yet and for the demo services the node builds at start. It
// does not run what it builds.
package gobuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Shape is the guest shape to build.
type Shape string

const (
	// Command builds a WASI command: _start per invocation.
	Command Shape = "command"
	// Reactor builds a module that stays instantiated and exports the
	// invoke ABI (-buildmode=c-shared).
	Reactor Shape = "reactor"
)

// ErrNoToolchain is returned when no go command is on PATH.
var ErrNoToolchain = errors.New("the go toolchain is not installed (https://go.dev/dl); build the .wasm yourself or install Go")

// Wasm builds the Go main package in dir into out. Extra environment (e.g.
// GOFLAGS=-mod=mod) may be passed in env. The build's output is returned in
// the error when it fails.
func Wasm(ctx context.Context, dir, out string, shape Shape, env ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return ErrNoToolchain
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	args := []string{"build", "-trimpath", "-o", absOut}
	if shape == Reactor {
		args = append(args, "-buildmode=c-shared")
	}
	args = append(args, ".")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"), env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build (GOOS=wasip1, %s) in %s: %w\n%s", shape, dir, err, strings.TrimSpace(buf.String()))
	}
	return nil
}

// HasGoSources reports whether dir holds a Go package (a .go file that is not
// a test).
func HasGoSources(dir string) bool {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, m := range matches {
		if !strings.HasSuffix(m, "_test.go") {
			return true
		}
	}
	return false
}
