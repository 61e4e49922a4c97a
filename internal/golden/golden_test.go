package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what Check reports instead of
// failing the test that uses it.
type recorder struct {
	testing.TB
	errors, fatals []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, sprintf(format, args...))
}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "out.golden")
	r := &recorder{TB: t}

	Check(r, path, []byte("a\nb\n"), false, "go test -update")
	if len(r.fatals) != 1 || !strings.Contains(r.fatals[0], "go test -update") {
		t.Fatalf("missing file: fatals %q, want one naming the accept command", r.fatals)
	}

	Check(r, path, []byte("a\nb\n"), true, "go test -update")
	if data, err := os.ReadFile(path); err != nil || string(data) != "a\nb\n" {
		t.Fatalf("rewrite wrote %q, %v", data, err)
	}

	Check(r, path, []byte("a\nb\n"), false, "go test -update")
	if len(r.errors) != 0 {
		t.Fatalf("same output reported %q", r.errors)
	}

	Check(r, path, []byte("a\nc\n"), false, "go test -update")
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "line 2") || !strings.Contains(r.errors[0], "got  c\nwant b") {
		t.Fatalf("changed output reported %q, want line 2 with both lines", r.errors)
	}
}

func TestFirstDiff(t *testing.T) {
	for _, c := range []struct {
		got, want string
		n         int
		g, w      string
	}{
		{"x", "x", 0, "", ""},
		{"x\ny", "x", 2, "y", "(end)"},
		{"x", "x\ny", 2, "(end)", "y"},
		{"a\nb", "a\nB", 2, "b", "B"},
	} {
		n, g, w := FirstDiff(c.got, c.want)
		if n != c.n || g != c.g || w != c.w {
			t.Errorf("FirstDiff(%q, %q) = %d %q %q, want %d %q %q", c.got, c.want, n, g, w, c.n, c.g, c.w)
		}
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
