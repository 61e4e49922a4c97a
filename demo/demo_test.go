package demo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda"
	"github.com/andromeda-runner/andromeda/demo"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestPrepare builds the embedded examples the way `serve --demo` does, from
// a directory outside the repository, and checks the second start builds
// nothing.
func TestPrepare(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the demo services")
	cache := t.TempDir()
	t.Chdir(t.TempDir()) // not in the module: the embedded sources must suffice
	var progress bytes.Buffer
	dirs, err := demo.Prepare(context.Background(), andromeda.Sources, andromeda.Module, cache, &progress)
	if err != nil {
		t.Fatalf("Prepare: %v\n%s", err, progress.String())
	}
	if len(dirs) != 5 {
		t.Fatalf("Prepare found %d services, want 5:\n%s", len(dirs), progress.String())
	}
	for _, d := range dirs {
		m, err := manifest.Load(d)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(d, m.Runtime.Entry))
		if err != nil || (m.Runtime.Driver == manifest.DriverWasm && fi.Size() < 1000) {
			t.Fatalf("%s: entry %s not built: %v", m.Name, m.Runtime.Entry, err)
		}
	}
	if !strings.Contains(progress.String(), "building price-watch") || !strings.Contains(progress.String(), "done in") {
		t.Fatalf("no progress shown:\n%s", progress.String())
	}
	progress.Reset()
	again, err := demo.Prepare(context.Background(), andromeda.Sources, andromeda.Module, cache, &progress)
	if err != nil || len(again) != 5 || !strings.Contains(progress.String(), "already built") || strings.Contains(progress.String(), "building") {
		t.Fatalf("second Prepare = %v, %v:\n%s", again, err, progress.String())
	}
}
