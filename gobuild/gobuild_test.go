package gobuild

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestWasm builds a tiny service both ways and checks each output is a
// WebAssembly module; a directory that does not build gives the compiler's
// error.
func TestWasm(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build wasm")
	dir := t.TempDir()
	src := "package main\n\nfunc main() {}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !HasGoSources(dir) || HasGoSources(t.TempDir()) {
		t.Fatal("HasGoSources is wrong")
	}
	for _, shape := range []Shape{Command, Reactor} {
		out := filepath.Join(t.TempDir(), "out.wasm")
		if err := Wasm(context.Background(), dir, out, shape); err != nil {
			t.Fatalf("shape %v: %v", shape, err)
		}
		b, err := os.ReadFile(out)
		if err != nil || !bytes.HasPrefix(b, []byte("\x00asm")) {
			t.Fatalf("shape %v: output is not a wasm module (%v)", shape, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { undefined() }\n"), 0o644)
	if err := Wasm(context.Background(), dir, filepath.Join(t.TempDir(), "x.wasm"), Command); err == nil {
		t.Fatal("a service that does not compile built")
	}
}
