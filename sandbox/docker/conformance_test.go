package docker

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// allowEnv are the variables a container's environment holds on purpose:
// the driver's (HOME, TMPDIR, LANG), the engine's (HOSTNAME) and the
// image's (PATH).
var allowEnv = []string{"PATH", "HOME", "TMPDIR", "LANG", "HOSTNAME"}

// TestConformanceImage runs the driver conformance suite against an image
// service, the exec guest's image, in server and command mode.
func TestConformanceImage(t *testing.T) {
	var img string
	sandboxtest.Run(t, sandboxtest.Harness{
		Driver: func(t *testing.T) sandbox.Driver {
			d := newDriver(t, testConfig())
			img = guestImage(t, d).ID
			return d
		},
		Spec: func(t *testing.T, mode sandbox.Mode) sandbox.Spec {
			return sandbox.Spec{Service: "conformance-image", Image: img, Mode: mode, Limits: callLimits}
		},
		AllowEnv:    allowEnv,
		OwnRoot:     true,
		Started:     WorkersStarted,
		CancelGrace: defaultCancelGrace,
	})
}

// callLimits gives the suite's calls 30 s instead of its default 10 s: in
// command mode each call starts a container, and eight callers at once on
// an engine busy with other tests' containers have taken over 10 s to get
// theirs started. What the cases check (answers, isolation, outcomes) does
// not depend on it; the timeout cases use their own 500 ms.
var callLimits = sandbox.Limits{Timeout: 30 * time.Second}

// defaultCancelGrace is the process driver's default grace, which the
// pool applies.
const defaultCancelGrace = 250 * time.Millisecond

// TestConformanceKitImage runs the conformance kit (Certify: the kit cases
// in both modes, then the protocol checks on a raw worker) against the
// image service.
func TestConformanceKitImage(t *testing.T) {
	cfg := testConfig()
	cfg.Process.CancelGrace = time.Second
	d := newDriver(t, cfg)
	img := guestImage(t, d).ID
	certifyOK(t, d, func(mode sandbox.Mode) sandbox.Spec {
		return sandbox.Spec{Service: "conformance-kit-image", Image: img, Mode: mode, Limits: callLimits}
	}, sandbox.ModeServer, sandbox.ModeCommand)
}

// certifyOK runs Certify with spec in modes and fails t unless every
// check passes.
func certifyOK(t *testing.T, d *Driver, spec func(sandbox.Mode) sandbox.Spec, modes ...sandbox.Mode) {
	t.Helper()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := sandboxtest.Certify(ctx, sandboxtest.Kit{
		Driver: d, Spec: spec, Started: WorkersStarted, CancelGrace: d.cfg.Process.CancelGrace, Modes: modes,
	}, func(c sandboxtest.Check) { out.WriteString(c.String()) })
	if err != nil {
		t.Errorf("Certify = %v\n%s", err, out.String())
	}
	if n := len(slices.DeleteFunc(strings.Split(out.String(), "\n"), func(l string) bool { return !strings.HasPrefix(l, "ok ") })); n != kitChecks(len(modes)) {
		t.Errorf("%d checks passed, want %d\n%s", n, kitChecks(len(modes)), out.String())
	}
	t.Logf("\n%s", out.String())
}

// kitChecks is how many checks Certify runs in modes modes: the deploy and
// the 14 kit cases in each mode, then the 10 protocol checks (40 in two
// modes, as the process driver's kit test counts them).
func kitChecks(modes int) int { return modes*15 + 10 }

// archiveConfig returns a configuration whose runtime images are the test
// images of dockerimg: Empty for exec, Node and Python.
func archiveConfig(t *testing.T, language string) Config {
	t.Helper()
	cli := dockerimg.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := map[string]func(context.Context, *client.Client) (dockerimg.Image, error){
		lang.Exec: dockerimg.Empty, lang.Node: dockerimg.Node, lang.Python: dockerimg.Python,
	}[language]
	img, err := build(ctx, cli)
	if err != nil {
		t.Fatalf("runtime image of %s: %v", language, err)
	}
	cfg := testConfig()
	cfg.Images = map[string]string{language: img.ID}
	return cfg
}

// archiveGuest returns the service directory and entry of language's
// conformance guest: the exec guest's binary, or the process driver's
// Node.js and Python guests.
func archiveGuest(t *testing.T, language string) (dir, entry string) {
	t.Helper()
	if language == lang.Exec {
		if testEnv.guestErr != nil {
			t.Fatal(testEnv.guestErr)
		}
		return filepath.Dir(testEnv.guest), filepath.Base(testEnv.guest)
	}
	entry = map[string]string{lang.Node: "index.js", lang.Python: "main.py"}[language]
	b, err := os.ReadFile(filepath.Join("..", "process", "testdata", "guests", language, entry))
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(t.TempDir(), "service")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, entry), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, entry
}

// TestConformanceArchive runs the driver conformance suite against exec,
// Node.js and Python archive services in their runtime images, each in
// server and command mode, and the conformance kit (the protocol's cases,
// and the protocol checks on a raw worker) against Node.js and Python in
// command mode.
func TestConformanceArchive(t *testing.T) {
	for _, language := range []string{lang.Exec, lang.Node, lang.Python} {
		t.Run(language, func(t *testing.T) {
			dir, entry := archiveGuest(t, language)
			spec := func(mode sandbox.Mode) sandbox.Spec {
				return sandbox.Spec{Service: "conformance-" + language, Dir: dir, Entry: entry, Language: language, Mode: mode, Limits: callLimits}
			}
			modes := []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand}
			sandboxtest.Run(t, sandboxtest.Harness{
				Driver:      func(t *testing.T) sandbox.Driver { return newDriver(t, archiveConfig(t, language)) },
				Spec:        func(t *testing.T, mode sandbox.Mode) sandbox.Spec { return spec(mode) },
				Modes:       modes,
				AllowEnv:    allowEnv,
				OwnRoot:     true,
				Started:     WorkersStarted,
				CancelGrace: defaultCancelGrace,
			})
			if language != lang.Exec {
				t.Run("kit-command", func(t *testing.T) {
					cfg := archiveConfig(t, language)
					cfg.Process.CancelGrace = time.Second
					certifyOK(t, newDriver(t, cfg), spec, sandbox.ModeCommand)
				})
			}
		})
	}
}
