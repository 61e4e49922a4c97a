package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestMain turns the test binary into the sandbox init when the driver
// re-executes it, as the node's main does, and builds the Go guest once.
func TestMain(m *testing.M) {
	MaybeInit()
	if os.Getenv(bareEchoEnv) != "" {
		bareEcho()
	}
	if dir := os.Getenv(helperNodeEnv); dir != "" {
		testEnv.dir, testEnv.work = dir, filepath.Join(dir, "work")
		helperNode()
	}
	dir, err := os.MkdirTemp("", "andromeda-process-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEnv.dir = dir
	testEnv.work = filepath.Join(dir, "work")
	testEnv.guestErr = setUpGuests(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testEnv is what the tests share: a work dir (so skeletons and shims are
// written once) and the guests' service directories.
var testEnv struct {
	dir      string
	work     string
	guestErr error
}

// goGuestPkg is the import path of the exec guest.
const goGuestPkg = "github.com/andromeda-runner/andromeda/sandbox/process/testdata/guests/go"

// setUpGuests builds the Go guest and copies the Node.js and Python guests
// into service directories readable by the sandbox user.
func setUpGuests(dir string) error {
	var errs []error
	if err := sandboxtest.GoBuild(goGuestPkg, filepath.Join(dir, "guest-exec", "guest"), []string{"CGO_ENABLED=0"}); err != nil {
		errs = append(errs, err)
	}
	if err := buildBroken(filepath.Join(dir, "broken")); err != nil {
		errs = append(errs, err)
	}
	for lang, file := range map[string]string{LangNode: "index.js", LangPython: "main.py"} {
		b, err := os.ReadFile(filepath.Join("testdata", "guests", lang, file))
		if err == nil {
			err = writeService(filepath.Join(dir, "guest-"+lang), map[string]string{file: string(b)})
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeService writes files (name → content) into a new service directory
// dir, world-readable as the node's unpacker leaves them.
func writeService(dir string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if filepath.Ext(name) == "" || filepath.Ext(name) == ".sh" {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	})
}

// guest returns the service directory and entry of lang's conformance guest.
func guest(t testing.TB, lang string) (dir, entry string) {
	t.Helper()
	if errors.Is(testEnv.guestErr, sandboxtest.ErrNoGo) {
		sandboxtest.Require(t, false, "building the exec guest needs the go command on PATH")
	}
	if testEnv.guestErr != nil {
		t.Fatal(testEnv.guestErr)
	}
	entry = map[string]string{LangExec: "guest", LangNode: "index.js", LangPython: "main.py"}[lang]
	return filepath.Join(testEnv.dir, "guest-"+lang), entry
}

// requireSandbox skips (fails in strict CI) a test on a host where the
// driver cannot build its sandbox with every layer: not root, no cgroups.
func requireSandbox(t testing.TB) {
	t.Helper()
	sandboxtest.Require(t, os.Geteuid() == 0, "the process driver's sandbox tests need root (namespaces, cgroups)")
	d := sharedDriver(t)
	sandboxtest.Require(t, len(d.missingLayers()) == 0, fmt.Sprintf("isolation layers missing on this host: %v", d.missingLayers()))
}

// requireLang skips (fails in strict CI) a test whose language's toolchain
// is missing.
func requireLang(t testing.TB, lang string) {
	t.Helper()
	if lang == LangExec {
		return
	}
	tc := sharedDriver(t).toolchains(context.Background())[lang]
	sandboxtest.Require(t, tc.Err == nil, fmt.Sprintf("%s toolchain: %v (Debian: apt-get install nodejs npm python3 python3-pip)", lang, tc.Err))
}

// requireInstaller skips (fails in strict CI) a test that installs
// dependencies when lang's installer (npm, pip) is missing.
func requireInstaller(t testing.TB, lang string) {
	t.Helper()
	requireLang(t, lang)
	tc := sharedDriver(t).toolchains(context.Background())[lang]
	sandboxtest.Require(t, len(tc.Installer) > 0, fmt.Sprintf("%s has no package installer (Debian: apt-get install npm python3-pip)", lang))
}

var shared struct {
	once sync.Once
	d    *Driver
}

// sharedDriver is one driver for the tests that only read what it found.
func sharedDriver(t testing.TB) *Driver {
	shared.once.Do(func() { shared.d = New(testConfig()) })
	return shared.d
}

// testConfig is the configuration of the tests' drivers: the shared work
// dir, worker cgroups under /andromeda-test, quiet logs, and the
// toolchains ANDROMEDA_TEST_NODE and ANDROMEDA_TEST_PYTHON name (default:
// node and python3 on PATH).
func testConfig() Config {
	return Config{
		WorkDir:      testEnv.work,
		CgroupParent: "/andromeda-test",
		Node:         os.Getenv("ANDROMEDA_TEST_NODE"),
		Python:       os.Getenv("ANDROMEDA_TEST_PYTHON"),
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// newDriver returns a driver closed when t ends.
func newDriver(t testing.TB, cfg Config) *Driver {
	t.Helper()
	d := New(cfg)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return d
}

// deploy deploys spec and stops it when t ends.
func deploy(t testing.TB, d *Driver, spec sandbox.Spec) *deployment {
	t.Helper()
	return deployCtx(t, context.Background(), d, spec)
}

// deployCtx is deploy with the values of ctx (a progress reporter).
func deployCtx(t testing.TB, ctx context.Context, d *Driver, spec sandbox.Spec) *deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dep, err := d.Deploy(ctx, spec)
	if err != nil {
		t.Fatalf("Deploy(%s %s) = %v", spec.Language, spec.Entry, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := dep.Stop(ctx); err != nil {
			t.Errorf("Stop() = %v", err)
		}
	})
	return dep.(*deployment)
}

// workerPids returns the host pids of a server-mode deployment's workers.
func (d *deployment) workerPids() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var pids []int
	for _, w := range d.slots {
		if w != nil {
			pids = append(pids, w.pid())
		}
	}
	return pids
}

// waitWorker returns the host pid of the first live worker to appear, or 0
// after timeout.
func (d *deployment) waitWorker(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		for w := range d.live {
			d.mu.Unlock()
			return w.pid()
		}
		d.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	return 0
}

// pid returns the host pid of a jail worker, 0 for another Proc.
func (w *workerProc) pid() int {
	if j, ok := w.proc.(*jailProc); ok {
		return j.p.Pid
	}
	return 0
}
