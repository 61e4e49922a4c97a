package docker

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
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
			return sandbox.Spec{Service: "conformance-image", Image: img, Mode: mode}
		},
		AllowEnv:    allowEnv,
		Started:     WorkersStarted,
		CancelGrace: defaultCancelGrace,
	})
}

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
		return sandbox.Spec{Service: "conformance-kit-image", Image: img, Mode: mode}
	})
}

// certifyOK runs Certify with spec and fails t unless every check passes.
func certifyOK(t *testing.T, d *Driver, spec func(sandbox.Mode) sandbox.Spec) {
	t.Helper()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := sandboxtest.Certify(ctx, sandboxtest.Kit{
		Driver: d, Spec: spec, Started: WorkersStarted, CancelGrace: d.cfg.Process.CancelGrace,
	}, func(c sandboxtest.Check) { out.WriteString(c.String()) })
	if err != nil {
		t.Errorf("Certify = %v\n%s", err, out.String())
	}
	if n := len(slices.DeleteFunc(strings.Split(out.String(), "\n"), func(l string) bool { return !strings.HasPrefix(l, "ok ") })); n != kitChecks {
		t.Errorf("%d checks passed, want %d\n%s", n, kitChecks, out.String())
	}
	t.Logf("\n%s", out.String())
}

// kitChecks is how many checks Certify runs: the deploy and the kit cases
// in each of two modes, then the protocol checks (as the process driver's
// kit test counts them).
const kitChecks = 40
