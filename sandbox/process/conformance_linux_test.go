package process

import (
	"context"
	"io"
	"path/filepath"
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

// TestConformanceKit runs the kit behind `andromeda conformance DIR`
// against the guests in the repository (which pass) and a broken shim
// (which fails).
func TestConformanceKit(t *testing.T) {
	requireSandbox(t)
	d := newDriver(t, testConfig())
	for _, lang := range []string{LangExec, LangNode, LangPython} {
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			requireLang(t, lang)
			dir, entry := guest(t, lang)
			var out strings.Builder
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := certify(ctx, d, dir, lang, entry, &out); err != nil {
				t.Errorf("Certify = %v\n%s", err, out.String())
			}
			t.Logf("\n%s", out.String())
		})
	}
	t.Run("broken", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "broken")
		if err := writeService(dir, map[string]string{"run": brokenShim}); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := certify(ctx, d, dir, LangExec, DefaultEntry(LangExec), &out)
		if err == nil || !strings.Contains(out.String(), "FAIL server/echo") {
			t.Errorf("Certify of a broken shim = %v, want a failure of echo\n%s", err, out.String())
		}
		t.Logf("%v\n%s", err, out.String())
	})
}
