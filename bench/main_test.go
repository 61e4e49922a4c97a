package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestWATSources checks that the committed guests are their .wat sources
// assembled.
func TestWATSources(t *testing.T) {
	wat2wasm, err := exec.LookPath("wat2wasm")
	sandboxtest.Require(t, err == nil, "checking the .wasm files against their .wat sources needs wat2wasm (Debian package wabt)")
	sources, _ := filepath.Glob("testdata/*.wat")
	if len(sources) == 0 {
		t.Fatal("no .wat sources in testdata")
	}
	for _, src := range sources {
		bin := strings.TrimSuffix(src, ".wat") + ".wasm"
		out := filepath.Join(t.TempDir(), filepath.Base(bin))
		if b, err := exec.Command(wat2wasm, src, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", src, err, b)
		}
		want, _ := os.ReadFile(out)
		got, err := os.ReadFile(bin)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not %s assembled (%v): run wat2wasm %s -o %s", bin, src, err, src, bin)
		}
	}
}

// TestWriteBenchmarks checks that -write replaces only what lies between
// the markers, appends a section the first time, and refuses a file with
// one marker.
func TestWriteBenchmarks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	os.WriteFile(path, []byte("# Benchmarks\n\nintro\n"), 0o644)
	if err := writeBenchmarks(path, "| a |\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeBenchmarks(path, "| b |\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	s := string(got)
	if !strings.HasPrefix(s, "# Benchmarks\n\nintro\n") || strings.Contains(s, "| a |") || strings.Count(s, "| b |") != 1 || strings.Count(s, beginMark) != 1 {
		t.Errorf("after two writes:\n%s", s)
	}
	os.WriteFile(path, []byte("x\n"+beginMark+"\n"), 0o644)
	if err := writeBenchmarks(path, "| c |\n"); err == nil {
		t.Error("a file with only the begin marker was rewritten")
	}
}

// TestRender checks the ratios: each row's p50 over its group's best peer
// and over its floor, and a row that did not run says why.
func TestRender(t *testing.T) {
	rs := []result{
		{row: row{group: "g", name: "a", kind: andromeda}, n: 1, p50: 2000, p99: 3000, ops: 10},
		{row: row{group: "g", name: "p1", kind: peer}, n: 1, p50: 4000, p99: 5000, ops: 10},
		{row: row{group: "g", name: "p2", kind: peer}, n: 1, p50: 8000, p99: 9000, ops: 10},
		{row: row{group: "g", name: "f", kind: floor}, n: 1, p50: 1000, p99: 1000, ops: 10},
		{row: row{group: "g", name: "x", kind: peer}, note: "needs root"},
	}
	out := render(rs)
	for _, want := range []string{
		"| g | a | andromeda | 2.00 µs | 3.00 µs | 10 | 0.50 | 2.00 |",
		"| g | p2 | peer | 8.00 µs | 9.00 µs | 10 | 2.00 | 8.00 |",
		"| g | x | peer | — | — | — | — | — | not run: needs root |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
}
