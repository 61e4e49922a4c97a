// Package demo prepares the bundled example services for `andromeda serve
// --demo`: it writes them out of the embedded sources, compiles the Go ones
// to WebAssembly with visible progress, packs each, and caches the result by
// the hash of the sources, the Go version and the build's environment, so a
// second start builds and packs nothing and runs no go command. It does not
// submit them: the node does.
package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/manifest"
)

// Service is one prepared example: its directory (manifest and built
// entry) and the same directory packed (andromeda pack), which the node
// takes without packing it again at every start.
type Service struct {
	Dir, Archive string
}

// buildRecipe names how the demo is built and packed; changing the build
// (flags, environment, packing) changes it, so that no cache built the
// old way is used.
const buildRecipe = "demo-build 2: go build -trimpath [-buildmode=c-shared] GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off GOPROXY=off; archive.Pack"

// keyEnv are the environment variables that change what go build makes
// and are part of the cache key.
var keyEnv = []string{"GOFLAGS", "GOTOOLCHAIN", "GOEXPERIMENT", "GOWASM", "GOROOT", "GOENV", "GOAMD64"}

// completeFile marks a finished build: one line per output, "sha256 path"
// (path relative to the build, slash-separated), checked on every use.
const completeFile = ".complete"

// Prepare returns the example services in src (a tree holding examples/,
// sdk/go and contract), built and packed. module is the module path the
// SDK is imported by. Progress lines go to progress.
//
// The build is cached in cacheDir under a key covering the sources, the Go
// toolchain's version, the build recipe and the environment that changes
// a build (GOFLAGS, GOTOOLCHAIN, GOEXPERIMENT, GOWASM, the go env file), so
// a warm start runs no go command: the toolchain's version is read from
// its GOROOT's VERSION file. A finished build holds a .complete file
// listing the sha256 of every output (built entries and archives); a
// build whose outputs do not match is built again. Builds are made in a
// temporary directory and renamed into place: when two nodes build at
// once the first rename wins and the other uses it.
func Prepare(ctx context.Context, src fs.FS, module, cacheDir string, progress io.Writer) ([]Service, error) {
	files, sum, err := hashTree(src)
	if err != nil {
		return nil, fmt.Errorf("demo: read sources: %w", err)
	}
	key := cacheKey(ctx, sum)
	final := filepath.Join(cacheDir, "demo-"+key[:16])
	if svcs, err := verified(final); err == nil {
		fmt.Fprintf(progress, "demo: %d services already built (cache %s)\n", len(svcs), final)
		return svcs, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(progress, "demo: cached build unusable, building again: %v\n", err)
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	work, err := os.MkdirTemp(cacheDir, "demo-build-")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(work)
	if err := build(ctx, src, files, module, work, progress); err != nil {
		return nil, err
	}
	if err := os.Rename(work, final); err != nil {
		// Another node's build is in place (the first rename wins), or
		// a cached build that failed its check is: use the one there if
		// it is sound, else replace it.
		if svcs, verr := verified(final); verr == nil {
			return svcs, nil
		}
		old := final + ".old-" + filepath.Base(work)
		if err := os.Rename(final, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("demo: %w", err)
		}
		os.RemoveAll(old)
		if err := os.Rename(work, final); err != nil {
			if svcs, verr := verified(final); verr == nil {
				return svcs, nil
			}
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	return verified(final)
}

// cacheKey is the hex sha256 of what decides the build's outputs.
func cacheKey(ctx context.Context, sourceSum string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", buildRecipe, sourceSum)
	fmt.Fprintf(h, "go %s\n", goVersion(ctx))
	for _, k := range keyEnv {
		fmt.Fprintf(h, "%s=%s\n", k, os.Getenv(k))
	}
	// The go env file sets defaults for the same variables.
	if f := goEnvFile(); f != "" {
		if b, err := os.ReadFile(f); err == nil {
			fmt.Fprintf(h, "goenv %d\n", len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// goVersion is the version of the go command on PATH, read from its
// GOROOT's VERSION file (go env GOVERSION only where there is none, as in
// a toolchain built from source), with the command's path.
func goVersion(ctx context.Context) string {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "none"
	}
	root := os.Getenv("GOROOT")
	if root == "" {
		if real, err := filepath.EvalSymlinks(goBin); err == nil {
			root = filepath.Dir(filepath.Dir(real))
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "VERSION")); err == nil {
		first, _, _ := strings.Cut(string(b), "\n")
		return goBin + " " + strings.TrimSpace(first)
	}
	if out, err := exec.CommandContext(ctx, goBin, "env", "GOVERSION").Output(); err == nil {
		return goBin + " " + strings.TrimSpace(string(out))
	}
	return goBin + " unknown"
}

// goEnvFile is the go command's env file (go env -w writes it).
func goEnvFile() string {
	if f := os.Getenv("GOENV"); f != "" {
		if f == "off" {
			return ""
		}
		return f
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "go", "env")
}

// build writes the sources into work, builds the Go examples, packs every
// example and writes the .complete file.
func build(ctx context.Context, src fs.FS, files []string, module, work string, progress io.Writer) error {
	for _, name := range files {
		data, err := fs.ReadFile(src, name)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		dst := filepath.Join(work, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	gomod := fmt.Sprintf("module %s\n\ngo 1.24\n", module)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(gomod), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	dirs, err := serviceDirs(work)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	type entry struct {
		dir string
		m   *manifest.Service
	}
	var all, builds []entry
	for _, dir := range dirs {
		m, err := manifest.Load(dir)
		if err != nil {
			return fmt.Errorf("demo: example %s: %w", filepath.Base(dir), err)
		}
		all = append(all, entry{dir, m})
		if m.Runtime.Driver == manifest.DriverWasm && gobuild.HasGoSources(dir) {
			builds = append(builds, entry{dir, m})
		}
	}
	var outputs []string
	for i, b := range builds {
		dir, m := b.dir, b.m
		shape := gobuild.Command
		if m.Mode == manifest.ModeServer {
			shape = gobuild.Reactor
		}
		fmt.Fprintf(progress, "demo: [%d/%d] building %s (Go → wasip1 %s)… ", i+1, len(builds), m.Name, shape)
		start := time.Now()
		entry := filepath.Join(dir, m.Runtime.Entry)
		if err := gobuild.Wasm(ctx, dir, entry, shape, "GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off"); err != nil {
			fmt.Fprintln(progress, "failed")
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(progress, "done in %s\n", time.Since(start).Round(10*time.Millisecond))
		outputs = append(outputs, entry)
	}
	if err := os.MkdirAll(filepath.Join(work, "archives"), 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for _, e := range all {
		data, err := archive.Pack(e.dir)
		if err != nil {
			return fmt.Errorf("demo: pack %s: %w", e.m.Name, err)
		}
		out := filepath.Join(work, "archives", filepath.Base(e.dir)+".tar.gz")
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		outputs = append(outputs, out)
	}
	var list strings.Builder
	for _, out := range outputs {
		sum, err := fileSum(out)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		rel, _ := filepath.Rel(work, out)
		fmt.Fprintf(&list, "%s  %s\n", sum, filepath.ToSlash(rel))
	}
	if err := os.WriteFile(filepath.Join(work, completeFile), []byte(list.String()), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// verified returns the services of the build in root when its .complete
// file is there and every output it lists has the sha256 it lists, and
// every service has its archive. A root without .complete is
// fs.ErrNotExist.
func verified(root string) ([]Service, error) {
	list, err := os.ReadFile(filepath.Join(root, completeFile))
	if err != nil {
		return nil, err
	}
	listed := map[string]bool{}
	for line := range strings.Lines(string(list)) {
		sum, rel, ok := strings.Cut(strings.TrimSpace(line), "  ")
		if !ok || rel == "" || strings.Contains(rel, "..") {
			return nil, fmt.Errorf("%s: malformed line %q", completeFile, line)
		}
		got, err := fileSum(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		if got != sum {
			return nil, fmt.Errorf("%s: sha256 %s, listed as %s", rel, got, sum)
		}
		listed[rel] = true
	}
	dirs, err := serviceDirs(root)
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, errors.New("no example services in the cached build")
	}
	svcs := make([]Service, len(dirs))
	for i, dir := range dirs {
		rel := "archives/" + filepath.Base(dir) + ".tar.gz"
		if !listed[rel] {
			return nil, fmt.Errorf("%s is not in %s", rel, completeFile)
		}
		svcs[i] = Service{Dir: dir, Archive: filepath.Join(root, filepath.FromSlash(rel))}
	}
	return svcs, nil
}

// fileSum is the hex sha256 of a file.
func fileSum(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
