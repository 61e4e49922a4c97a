package sandboxtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// ThrashService returns a new service directory holding main.py, the
// Python thrash guest read from guest (the process driver's
// testdata/thrash/main.py), and data.bin, the 32 MiB file it reads mapped,
// written through to disk: the guest drops the file's pages from the page
// cache, which the kernel does only for clean ones, so that every page it
// reads is charged to its own cgroup.
func ThrashService(t testing.TB, guest string) string {
	t.Helper()
	b, err := os.ReadFile(guest)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "service")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.py"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "data.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 32<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ThrashMessage is the thrash guest's message for a limit of 128 MiB:
// anonymous memory up to 3 MiB below it, within the thrash watch's
// headroom of 4 MiB and far enough from the limit that the kernel does
// not kill the guest first.
const ThrashMessage = `{"limit":134217728,"margin":3145728}`

// ThrashLimit is the memory limit ThrashMessage is for.
const ThrashLimit = 128 << 20

// ThrashCase is one run of the thrash guest: with the driver's watch after
// After (negative: off) and the invocation's Timeout, Want is its outcome.
type ThrashCase struct {
	Name           string
	After, Timeout time.Duration
	Want           sandbox.Outcome
}

// ThrashCases are the runs every driver's thrash test makes: watched, the
// guest is killed as out of memory; unwatched, the same invocation runs to
// its deadline, which shows that the guest really thrashes.
var ThrashCases = []ThrashCase{
	{"watched", time.Second, 20 * time.Second, sandbox.OOM},
	{"unwatched", -1, 6 * time.Second, sandbox.Timeout},
}

// CheckThrash fails t unless exit, which took took, is what c wants: for
// an OOM, a detail saying the worker thrashed, peak memory within the
// limit, and an end well before the deadline.
func CheckThrash(t testing.TB, c ThrashCase, exit sandbox.Exit, took time.Duration) {
	t.Helper()
	t.Logf("%s after %v: %s", exit.Outcome, took.Round(time.Millisecond), exit.Detail)
	if exit.Outcome != c.Want {
		t.Fatalf("outcome %s (%s), want %s", exit.Outcome, exit.Detail, c.Want)
	}
	if c.Want != sandbox.OOM {
		return
	}
	if !strings.Contains(exit.Detail, "out of memory: thrashing at its memory limit") || !strings.Contains(exit.Detail, "major page faults") {
		t.Errorf("detail %q does not say the worker thrashed", exit.Detail)
	}
	if took > c.Timeout/2 {
		t.Errorf("killed after %v, want soon after the thrash watch's %v", took, c.After)
	}
	if exit.Usage.PeakMemory > ThrashLimit {
		t.Errorf("peak memory %d bytes, over the limit", exit.Usage.PeakMemory)
	}
}
