package process

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestConformance runs the driver conformance suite against exec (Go),
// Node.js and Python workers, each in server and command mode.
func TestConformance(t *testing.T) {
	requireSandbox(t)
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		t.Run(lang, func(t *testing.T) {
			requireLang(t, lang)
			dir, entry := guest(t, lang)
			sandboxtest.Run(t, sandboxtest.Harness{
				Driver: func(t *testing.T) sandbox.Driver { return newDriver(t, testConfig()) },
				Spec: func(t *testing.T, mode sandbox.Mode) sandbox.Spec {
					return sandbox.Spec{Service: "conformance-" + lang, Dir: dir, Entry: entry, Language: lang, Mode: mode}
				},
				AllowEnv:    []string{"PATH", "HOME", "TMPDIR", "LANG"},
				Started:     WorkersStarted,
				CancelGrace: DefaultCancelGrace,
			})
		})
	}
}

// brokenShim answers init, then replies to every message with a line that
// is not JSON: the kit must fail it.
const brokenShim = `#!/bin/sh
read -r line
echo '{"type":"ready","id":"init","protocol":1,"concurrency":4}'
while read -r line; do echo "not json"; done
`

// certify runs the conformance kit behind `andromeda conformance DIR` on
// d, as cmd/andromeda does.
func certify(ctx context.Context, d *Driver, dir, lang, entry string, out io.Writer) error {
	return sandboxtest.Certify(ctx, sandboxtest.Kit{
		Driver:      d,
		Spec:        ConformanceSpec(dir, lang, entry),
		Started:     WorkersStarted,
		CancelGrace: d.cfg.CancelGrace,
	}, func(c sandboxtest.Check) { io.WriteString(out, c.String()) })
}

// brokenPkg is the import path of the deliberately broken workers.
const brokenPkg = "github.com/andromeda-runner/andromeda/sandbox/process/testdata/broken"

// brokenWorkers are the names testdata/broken is run under, each breaking
// one rule, with the checks that must catch it. The kit runs those and
// echo (which the worker passes: it is broken in one way only).
var brokenWorkers = map[string][]string{
	"ignores-cancel": {"protocol/cancel", "server/cancel-wait"},
	"drops-logs":     {"command/log", "protocol/log", "server/log"},
	"bad-input":      {"protocol/bad-input"},
}

// buildBroken builds the broken worker into dir once per name it is run
// under.
func buildBroken(dir string) error {
	bin := filepath.Join(dir, "broken")
	if err := sandboxtest.GoBuild(brokenPkg, bin, []string{"CGO_ENABLED=0"}); err != nil {
		return err
	}
	for name := range brokenWorkers {
		if err := os.Link(bin, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return os.Chmod(dir, 0o755)
}

// TestConformanceKit runs the kit behind `andromeda conformance DIR`
// against the guests in the repository (which pass), a shim that answers
// every invocation with a line that is not JSON, and the deliberately
// broken workers of testdata/broken, which must fail exactly the checks
// that catch them.
func TestConformanceKit(t *testing.T) {
	requireSandbox(t)
	cfg := testConfig()
	// Generous, so that a worker answering its cancel is never killed only
	// because this 2-core machine was busy.
	cfg.CancelGrace = time.Second
	d := newDriver(t, cfg)
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			requireLang(t, lang)
			dir, entry := guest(t, lang)
			var out strings.Builder
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := certify(ctx, d, dir, lang, entry, &out); err != nil {
				t.Errorf("Certify = %v\n%s", err, out.String())
			}
			if n := len(slices.DeleteFunc(strings.Split(out.String(), "\n"), func(l string) bool { return !strings.HasPrefix(l, "ok ") })); n != kitChecks {
				t.Errorf("%d checks passed, want %d\n%s", n, kitChecks, out.String())
			}
			t.Logf("\n%s", out.String())
		})
	}
	t.Run("not-json", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "broken")
		if err := writeService(dir, map[string]string{"run": brokenShim}); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		err := sandboxtest.Certify(ctx, sandboxtest.Kit{
			Driver: d, Spec: ConformanceSpec(dir, LangExec, DefaultEntry(LangExec)),
			Checks: []string{"echo", "protocol/handshake"},
		}, func(c sandboxtest.Check) { out.WriteString(c.String()) })
		if err == nil || !strings.Contains(out.String(), "FAIL server/echo") || !strings.Contains(out.String(), "FAIL protocol/handshake") {
			t.Errorf("Certify of a broken shim = %v, want a failure of echo\n%s", err, out.String())
		}
		t.Logf("%v\n%s", err, out.String())
	})
	for name, want := range brokenWorkers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			guest(t, LangExec) // the build's error, if any
			var out strings.Builder
			var failed []string
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err := sandboxtest.Certify(ctx, sandboxtest.Kit{
				Driver:      d,
				Spec:        ConformanceSpec(filepath.Join(testEnv.dir, "broken"), LangExec, name),
				Started:     WorkersStarted,
				CancelGrace: d.cfg.CancelGrace,
				Checks:      append([]string{"echo", "protocol/handshake"}, want...),
			}, func(c sandboxtest.Check) {
				out.WriteString(c.String())
				if !c.OK {
					failed = append(failed, c.Name)
				}
			})
			slices.Sort(failed)
			if err == nil || !slices.Equal(failed, want) {
				t.Errorf("Certify of the worker %s = %v, failing %q; want it to fail %q and pass echo and handshake\n%s", name, err, failed, want, out.String())
			}
			t.Logf("%v\n%s", err, out.String())
		})
	}
}

// kitChecks is how many checks Certify runs: the deploy and the kit cases
// in each of two modes, then the protocol checks.
const kitChecks = 40
