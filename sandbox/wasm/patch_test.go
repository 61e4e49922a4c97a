package wasm

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

const wazeroPath = "github.com/tetratelabs/wazero"

// repoRoot is the module root, two levels above this package.
var repoRoot = filepath.Join("..", "..")

// wazeroPatchLines are lines the patch puts into the copy in
// third_party/wazero, one per change third_party/wazero/PATCHED lists: a
// copy refreshed from upstream without redoing the patch loses them.
var wazeroPatchLines = []struct{ file, line string }{
	{"internal/wasm/module_instance.go", "w.stop = context.AfterFunc(ctx, w.fire)"},
	{"internal/engine/wazevo/call_engine.go", "w = wasm.NewCtxWatch(m)"},
	{"internal/engine/wazevo/module_engine.go", "ce.execCtx.moduleClosedPtr = &m.module.Closed"},
	{"internal/engine/wazevo/frontend/lower.go", "c.insertLoopHeaderTerminationCheck()"},
	{"internal/engine/wazevo/frontend/lower.go", "AsIcmp(closed, zero, ssa.IntegerCmpCondNotEqual)"},
	{"internal/engine/wazevo/call_engine.go", "c.execCtx.loopHeadersUntilGo = loopHeadersPerGoExit"},
	{"internal/engine/wazevo/call_engine.go", "func safePoint() { safePointCallee() }"},
	{"internal/engine/wazevo/engine_cache.go", "var magic = []byte{'W', 'A', 'Z', 'E', 'V', 'T'}"},
}

// TestWazeroPatch keeps the patched copy of wazero honest: go.mod requires
// the release third_party/wazero/PATCHED names and replaces it with the
// copy, this test binary links the copy, the copy carries the
// patch, and (without -short) no newer release exists upstream, so that
// whoever updates wazero checks whether upstream now does what the patch
// does (then the copy and the replace go) or redoes the patch on it.
func TestWazeroPatch(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	required, replaced := "", ""
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		switch {
		case len(f) >= 2 && f[0] == wazeroPath:
			required = f[1]
		case len(f) >= 4 && f[0] == "replace" && f[1] == wazeroPath && f[2] == "=>":
			replaced = f[3]
		}
	}
	patched, err := os.ReadFile(filepath.Join(repoRoot, "third_party", "wazero", "PATCHED"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(patched), "\n")
	f := strings.Fields(first)
	if len(f) < 2 || f[0] != wazeroPath {
		t.Fatalf("third_party/wazero/PATCHED starts %q, want %q and a version", first, wazeroPath)
	}
	release := f[1]
	if required != release {
		t.Errorf("go.mod requires %s %s, but third_party/wazero is a patched %s: redo the patch on the new release (third_party/README.md)", wazeroPath, required, release)
	}
	if replaced != "./third_party/wazero" {
		t.Errorf("go.mod replaces %s with %q, want ./third_party/wazero (the patched copy)", wazeroPath, replaced)
	}

	// The wazero linked into this binary is the copy: what it writes to a
	// compilation cache starts with the patched magic, not upstream's
	// "WAZEVO". (A test binary's build info lists no dependencies.)
	ctx := context.Background()
	cacheDir := t.TempDir()
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(true))
	bin, err := os.ReadFile("echo.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.CompileModule(ctx, bin); err != nil {
		t.Fatal(err)
	}
	_ = rt.Close(ctx)
	_ = cache.Close(ctx)
	entries := 0
	err = filepath.WalkDir(cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		entries++
		head := make([]byte, 6)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.ReadFull(f, head); err != nil {
			return err
		}
		if string(head) != "WAZEVT" {
			t.Errorf("compilation cache entry starts %q, want the patched copy's \"WAZEVT\": this binary links another wazero", head)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if entries == 0 {
		t.Error("compiling a module wrote nothing to the compilation cache")
	}

	for _, p := range wazeroPatchLines {
		src, err := os.ReadFile(filepath.Join(repoRoot, "third_party", "wazero", filepath.FromSlash(p.file)))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Contains(src, []byte(p.line)) {
			t.Errorf("third_party/wazero/%s lacks the patch's line %q (see third_party/wazero/PATCHED)", p.file, p.line)
		}
	}
	diff, err := os.ReadFile(filepath.Join(repoRoot, "third_party", "wazero.patch"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range wazeroPatchLines {
		if !bytes.Contains(diff, []byte(p.line)) {
			t.Errorf("third_party/wazero.patch lacks %q: regenerate it (sh third_party/wazero-patch.sh)", p.line)
		}
	}

	t.Run("upstream", func(t *testing.T) {
		if testing.Short() {
			t.Skip("asks proxy.golang.org for wazero's releases; not with -short")
		}
		newer, err := newerWazero(release)
		if err != nil {
			t.Skipf("cannot ask proxy.golang.org for wazero's releases: %v", err)
		}
		if newer != "" {
			t.Errorf("wazero %s is out (the copy is a patched %s): check whether it stops a guest at its deadline as cheaply "+
				"(wazero issue #2466, PRs #2524 and #2533); if so drop third_party/wazero and the replace in go.mod, "+
				"else redo the patch on it (third_party/README.md)", newer, release)
		}
	})
}

// newerWazero returns the newest wazero release above release on the Go
// module proxy, or "" when there is none.
func newerWazero(release string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://proxy.golang.org/"+wazeroPath+"/@v/list", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", &proxyError{resp.Status}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	newest, have := "", semver(release)
	if have == nil {
		return "", &proxyError{"cannot read version " + release}
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		v := strings.TrimSpace(sc.Text())
		if n := semver(v); n != nil && semverLess(have, n) && (newest == "" || semverLess(semver(newest), n)) {
			newest = v
		}
	}
	return newest, nil
}

type proxyError struct{ msg string }

func (e *proxyError) Error() string { return "proxy.golang.org: " + e.msg }

// semver parses a release version vX.Y.Z; it returns nil for anything else
// (pre-releases included).
func semver(v string) []int {
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if !strings.HasPrefix(v, "v") || len(parts) != 3 {
		return nil
	}
	n := make([]int, 3)
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return nil
		}
		n[i] = x
	}
	return n
}

func semverLess(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func TestSemver(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"v1.12.0", "v1.12.1", true},
		{"v1.12.0", "v1.13.0", true},
		{"v1.12.0", "v2.0.0", true},
		{"v1.12.0", "v1.9.9", false},
		{"v1.12.0", "v1.12.0", false},
	} {
		if got := semverLess(semver(c.a), semver(c.b)); got != c.less {
			t.Errorf("%s < %s = %v", c.a, c.b, got)
		}
	}
	for _, bad := range []string{"v1.12.0-pre.1", "1.12.0", "v1.12", "v1.x.0"} {
		if semver(bad) != nil {
			t.Errorf("semver(%q) parsed", bad)
		}
	}
}
