// Package demo prepares the bundled example services for `andromeda serve
// --demo`: it writes them out of the embedded sources, compiles the Go ones
// to WebAssembly with visible progress, and caches the result by the hash of
// the sources and the Go version, so a second start builds nothing. It does
// not submit them: the node does.
package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/manifest"
)

// Prepare returns the directories of the example services in src (a tree
// holding examples/, sdk/go and contract), built and ready to pack. module
// is the module path the SDK is imported by. Progress lines go to progress.
func Prepare(ctx context.Context, src fs.FS, module, cacheDir string, progress io.Writer) ([]string, error) {
	files, sum, err := hashTree(src)
	if err != nil {
		return nil, fmt.Errorf("demo: read sources: %w", err)
	}
	goVersion := "unknown"
	if out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	h := sha256.Sum256([]byte(sum + "\n" + goVersion))
	final := filepath.Join(cacheDir, "demo-"+hex.EncodeToString(h[:8]))
	if dirs, err := serviceDirs(final); err == nil && len(dirs) > 0 {
		if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
			fmt.Fprintf(progress, "demo: %d services already built (cache %s)\n", len(dirs), final)
			return dirs, nil
		}
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	work, err := os.MkdirTemp(cacheDir, "demo-build-")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(work)
	for _, name := range files {
		data, err := fs.ReadFile(src, name)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		dst := filepath.Join(work, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	gomod := fmt.Sprintf("module %s\n\ngo 1.24\n", module)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(gomod), 0o644); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	dirs, err := serviceDirs(work)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	type build struct {
		dir string
		m   *manifest.Service
	}
	var builds []build
	for _, dir := range dirs {
		m, err := manifest.Load(dir)
		if err != nil {
			return nil, fmt.Errorf("demo: example %s: %w", filepath.Base(dir), err)
		}
		if m.Runtime.Driver == manifest.DriverWasm && gobuild.HasGoSources(dir) {
			builds = append(builds, build{dir, m})
		}
	}
	for i, b := range builds {
		dir, m := b.dir, b.m
		shape := gobuild.Command
		if m.Mode == manifest.ModeServer {
			shape = gobuild.Reactor
		}
		fmt.Fprintf(progress, "demo: [%d/%d] building %s (Go → wasip1 %s)… ", i+1, len(builds), m.Name, shape)
		start := time.Now()
		if err := gobuild.Wasm(ctx, dir, filepath.Join(dir, m.Runtime.Entry), shape, "GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off"); err != nil {
			fmt.Fprintln(progress, "failed")
			return nil, fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(progress, "done in %s\n", time.Since(start).Round(10*time.Millisecond))
	}
	if err := os.WriteFile(filepath.Join(work, ".complete"), nil, 0o644); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	os.RemoveAll(final)
	if err := os.Rename(work, final); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return serviceDirs(final)
}

// serviceDirs lists root/examples/* directories holding a manifest.
func serviceDirs(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "examples"))
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, "examples", e.Name())
		for _, name := range manifest.FileNames() {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				dirs = append(dirs, dir)
				break
			}
		}
	}
	return dirs, nil
}

// hashTree lists src's regular files (sorted) and hashes their names and
// contents.
func hashTree(src fs.FS) ([]string, string, error) {
	var files []string
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasSuffix(p, ".wasm") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		data, err := fs.ReadFile(src, f)
		if err != nil {
			return nil, "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path.Clean(f), len(data))
		h.Write(data)
	}
	return files, hex.EncodeToString(h.Sum(nil)), nil
}
