// Package golden compares what a test produced with a file kept under
// testdata, and rewrites the file instead when the test runs with the flag
// that accepts a deliberate change. Tests of decoders, decisions, metrics
// and command output all keep their expected output this way.
package golden

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Check compares got with the file at path. With rewrite set it writes got
// to the file (creating its directory) and passes. A difference fails t
// with the first line that differs and accept, the command that would
// rewrite the file once the change has been reviewed.
func Check(t testing.TB, path string, got []byte, rewrite bool, accept string) {
	t.Helper()
	if rewrite {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run %s to create it)", err, accept)
		return
	}
	if bytes.Equal(got, want) {
		return
	}
	n, g, w := FirstDiff(string(got), string(want))
	t.Errorf("output differs from %s at line %d (run %s to accept a reviewed change):\ngot  %s\nwant %s", path, n, accept, g, w)
}

// FirstDiff returns the number (from 1) of the first line where got and
// want differ, and that line of each; "(end)" stands for a line past the
// end of a text.
func FirstDiff(got, want string) (n int, g, w string) {
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(gl), len(wl)) {
		g, w = line(gl, i), line(wl, i)
		if g != w {
			return i + 1, g, w
		}
	}
	return 0, "", ""
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end)"
}
