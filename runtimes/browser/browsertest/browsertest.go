// Package browsertest starts Debian's Chromium, headless, for tests that
// open the browser runtime's page in a real browser. It is a test helper:
// nothing in the node imports it.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// Path finds the browser: $ANDROMEDA_CHROMIUM, Debian's /usr/bin/chromium,
// or chromium on PATH.
func Path() (string, bool) {
	if p := os.Getenv("ANDROMEDA_CHROMIUM"); p != "" {
		return p, true
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", true
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// Browser starts a headless Chromium of its own for t, stopped when t
// ends, and returns its first tab; chromedp.NewContext on it opens more.
// It skips t (fails it under ANDROMEDA_CI_STRICT=1) when there is no
// Chromium.
func Browser(t testing.TB) context.Context {
	t.Helper()
	path, ok := Path()
	sandboxtest.Require(t, ok, "no Chromium: set ANDROMEDA_CHROMIUM or install Debian's chromium package")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox) // tests run as root
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	return ctx
}
