package demo_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/andromeda-runner/andromeda"
	"github.com/andromeda-runner/andromeda/archive"
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
	svcs, err := demo.Prepare(context.Background(), andromeda.Sources, andromeda.Module, cache, &progress)
	if err != nil {
		t.Fatalf("Prepare: %v\n%s", err, progress.String())
	}
	if len(svcs) != 5 {
		t.Fatalf("Prepare found %d services, want 5:\n%s", len(svcs), progress.String())
	}
	for _, s := range svcs {
		d := s.Dir
		if _, err := os.Stat(s.Archive); err != nil {
			t.Fatalf("no archive: %v", err)
		}
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

// smallSources is a demo tree of one example that needs no go build.
func smallSources(t *testing.T, mainPy string) fstest.MapFS {
	t.Helper()
	m, err := fs.ReadFile(andromeda.Sources, "examples/digest-python/andromeda.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return fstest.MapFS{
		"examples/digest-python/andromeda.yaml": {Data: m},
		"examples/digest-python/main.py":        {Data: []byte(mainPy)},
	}
}

// archiveFile returns the content of name in a service archive.
func archiveFile(t *testing.T, path, name string) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := archive.Unpack(f, filepath.Join(dir, "svc"), archive.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "svc", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPrepareSourceChange: a changed source is a new cache key, built
// again; the old sources still find their own build.
func TestPrepareSourceChange(t *testing.T) {
	cache := t.TempDir()
	var progress bytes.Buffer
	one, err := demo.Prepare(context.Background(), smallSources(t, "print('one')\n"), andromeda.Module, cache, &progress)
	if err != nil || len(one) != 1 {
		t.Fatalf("Prepare = %v, %v\n%s", one, err, progress.String())
	}
	progress.Reset()
	two, err := demo.Prepare(context.Background(), smallSources(t, "print('two')\n"), andromeda.Module, cache, &progress)
	if err != nil || len(two) != 1 {
		t.Fatalf("Prepare = %v, %v\n%s", two, err, progress.String())
	}
	if strings.Contains(progress.String(), "already built") || two[0].Archive == one[0].Archive {
		t.Fatalf("a changed source used the old build (%s, %s):\n%s", one[0].Archive, two[0].Archive, progress.String())
	}
	if got := archiveFile(t, two[0].Archive, "main.py"); got != "print('two')\n" {
		t.Fatalf("the new build's archive holds %q", got)
	}
	progress.Reset()
	again, err := demo.Prepare(context.Background(), smallSources(t, "print('one')\n"), andromeda.Module, cache, &progress)
	if err != nil || again[0].Archive != one[0].Archive || !strings.Contains(progress.String(), "already built") {
		t.Fatalf("the first sources again = %v, %v:\n%s", again, err, progress.String())
	}
}

// TestPrepareCorruptOutput: an output that no longer has the sha256 its
// .complete lists is built again, not used; so is a build whose
// .complete is missing.
func TestPrepareCorruptOutput(t *testing.T) {
	cache := t.TempDir()
	src := smallSources(t, "print('one')\n")
	var progress bytes.Buffer
	svcs, err := demo.Prepare(context.Background(), src, andromeda.Module, cache, &progress)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(svcs[0].Archive)
	if err := os.WriteFile(svcs[0].Archive, append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1), 0o644); err != nil {
		t.Fatal(err)
	}
	progress.Reset()
	again, err := demo.Prepare(context.Background(), src, andromeda.Module, cache, &progress)
	if err != nil {
		t.Fatalf("Prepare over a corrupt build: %v\n%s", err, progress.String())
	}
	if !strings.Contains(progress.String(), "unusable, building again") || strings.Contains(progress.String(), "already built") {
		t.Fatalf("a corrupt build was not rebuilt:\n%s", progress.String())
	}
	if got, _ := os.ReadFile(again[0].Archive); !bytes.Equal(got, good) {
		t.Fatalf("the rebuilt archive differs from the first build's (%d and %d bytes)", len(got), len(good))
	}
	// Without .complete the build is not used either.
	if err := os.Remove(filepath.Join(filepath.Dir(filepath.Dir(again[0].Archive)), ".complete")); err != nil {
		t.Fatal(err)
	}
	progress.Reset()
	if _, err := demo.Prepare(context.Background(), src, andromeda.Module, cache, &progress); err != nil || strings.Contains(progress.String(), "already built") {
		t.Fatalf("a build without .complete: %v\n%s", err, progress.String())
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 {
		t.Fatalf("cache holds %d entries after rebuilds, want 1 (left-overs?)", len(entries))
	}
}
