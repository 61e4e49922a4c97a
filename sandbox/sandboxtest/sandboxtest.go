package sandboxtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// StrictEnv is the environment variable CI sets to 1 to turn Require's skips
// into failures.
const StrictEnv = "ANDROMEDA_CI_STRICT"

// Strict reports whether StrictEnv is set to 1.
func Strict() bool { return os.Getenv(StrictEnv) == "1" }

// Require skips t with why unless ok; when Strict, it fails t instead. Use it
// for what a test needs from the host (a toolchain, root, Docker), so that a
// developer's machine skips and CI cannot silently skip.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if Strict() {
		t.Fatalf("%s (%s=1 makes this a failure instead of a skip)", why, StrictEnv)
	}
	t.Skip(why)
}

// GoGuest is the import path of the Go implementation of the suite's guest.
const GoGuest = "github.com/andromeda-runner/andromeda/sandbox/sandboxtest/guests/go"

// ErrNoGo is returned by GoBuild when the go command is not on PATH.
var ErrNoGo = errors.New("the go command is not on PATH")

// GoBuild runs `go build -o out [flags] pkg` with env added to the process
// environment (for example GOOS=wasip1 GOARCH=wasm), in the current directory,
// which must be inside this module for an import path of it. Use it from
// TestMain to build a guest once per test binary.
func GoBuild(pkg, out string, env []string, flags ...string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return ErrNoGo
	}
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command(gobin, append(args, pkg)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, stderr.Bytes())
	}
	return nil
}

// Harness is what a driver gives the suite.
type Harness struct {
	// Driver returns the driver under test. Run calls it once and does not
	// close it: register the close with t.Cleanup.
	Driver func(t *testing.T) sandbox.Driver
	// Spec returns a Spec that deploys the suite's guest in mode. Zero limits
	// are filled in by the suite: 64 MiB of memory, a 10 s timeout,
	// concurrency 4. Service defaults to "conformance".
	Spec func(t *testing.T, mode sandbox.Mode) sandbox.Spec
	// Modes are the modes to run every case in. Default: server and command.
	Modes []sandbox.Mode
	// Timeout is the timeout of the spin and sleep cases. Default 500 ms.
	Timeout time.Duration
	// Slack is how long past its timeout an invocation may take to return.
	// Default 1 s: the spin and sleep guests never end by themselves, so a
	// second proves the timeout stopped them, and it holds on a loaded
	// 2-core machine (100 ms did not: 629 ms for a 500 ms timeout).
	Slack time.Duration
	// AllowEnv names environment variables the driver sets for every guest
	// on purpose (PATH for a process shim, say): their host values may show
	// up in the guest. The suite's canary never may.
	AllowEnv []string
	// OwnRoot says the guest's root file system is its own (a container
	// image), which may hold a file at a path the host has too
	// (/etc/passwd): no-filesystem then accepts a read of such a file
	// whose size differs from the host's copy. The test's own secret
	// file must stay out of reach either way.
	OwnRoot bool
	// Skip maps a case name to the reason this driver cannot pass it here.
	// A skipped case goes through Require, so it fails when Strict.
	Skip map[string]string
	// Started, when set, returns how many worker processes a deployment
	// has started, restarts included: the panic and cancel cases then note
	// a server-mode worker that died where a runtime should let it live on.
	Started func(dep sandbox.Deployment) int64
	// CancelGrace is how long the driver lets a cancelled invocation end
	// before it kills the worker; with Started, the cancel case waits that
	// long before it looks. Default 0.
	CancelGrace time.Duration
}

func (h Harness) withDefaults() Harness {
	if len(h.Modes) == 0 {
		h.Modes = []sandbox.Mode{sandbox.ModeServer, sandbox.ModeCommand}
	}
	if h.Timeout <= 0 {
		h.Timeout = 500 * time.Millisecond
	}
	if h.Slack <= 0 {
		h.Slack = time.Second
	}
	return h
}

// The suite's defaults for zero limits.
const (
	defaultMemory      = 64 << 20
	defaultTimeout     = 10 * time.Second
	defaultConcurrency = 4
)

// spec returns the harness's spec for mode with the suite's defaults.
func (h Harness) spec(t *testing.T, mode sandbox.Mode) sandbox.Spec {
	t.Helper()
	return withDefaults(h.Spec(t, mode), mode)
}

// withDefaults returns s with the suite's defaults for its zero fields.
func withDefaults(s sandbox.Spec, mode sandbox.Mode) sandbox.Spec {
	if s.Service == "" {
		s.Service = "conformance"
	}
	if s.Mode == "" {
		s.Mode = mode
	}
	if s.Limits.Memory == 0 {
		s.Limits.Memory = defaultMemory
	}
	if s.Limits.Timeout == 0 {
		s.Limits.Timeout = defaultTimeout
	}
	if s.Limits.Concurrency == 0 {
		s.Limits.Concurrency = defaultConcurrency
	}
	return s
}

// canaryEnv is set in the test process so that a leak of the host
// environment into a guest is visible.
const canaryEnv = "ANDROMEDA_CONFORMANCE_CANARY"

// Run runs the conformance suite against the harness's driver: a driver
// group (Test, Offer), then every case in each mode. It sets a canary
// environment variable with t.Setenv, so it must not run in a parallel test.
func Run(t *testing.T, h Harness) {
	h = h.withDefaults()
	canary := fmt.Sprintf("canary-%d", time.Now().UnixNano())
	t.Setenv(canaryEnv, canary)
	d := h.Driver(t)

	t.Run("driver", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Test(ctx); err != nil {
			t.Errorf("Test() = %v, want nil", err)
		}
		offer := d.Offer()
		if offer.Driver != d.Name() {
			t.Errorf("Offer().Driver = %q, want %q (Name())", offer.Driver, d.Name())
		}
		for _, m := range h.Modes {
			if !slices.Contains(offer.Modes, m) {
				t.Errorf("Offer().Modes = %v, want it to include %q", offer.Modes, m)
			}
		}
	})
	for _, mode := range h.Modes {
		t.Run(string(mode), func(t *testing.T) {
			s := &suite{h: h, d: d, mode: mode, canary: canary}
			s.spec = h.spec(t, mode)
			s.dep = s.deploy(t)
			for _, c := range cases {
				if c.where == inKit {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					if why, ok := h.Skip[c.name]; ok {
						Require(t, false, why)
					}
					c.run(t, s)
				})
			}
		})
	}
}
