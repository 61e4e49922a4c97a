package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/runtimes/browser/browsertest"
)

// TestBrowserRuntimeNode opens the node's /runtime/browser in a real
// Chromium: with a token of the runtime role the page connects and is
// listed among the node's runtimes (enabled while connected, with why
// not once it went away); with a submitter's token it is refused and not
// listed; a runtime token opens nothing else of the API; the page's
// WebSocket outlives the server's per-request read and write timeouts
// (1 s here).
func TestBrowserRuntimeNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t, func(c *node.Config) {
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout = httpTimeout(t, "1s"), httpTimeout(t, "1s")
	})
	rt, err := n.op.CreateToken(ctx, "tab", api.RoleRuntime)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := n.op.CreateToken(ctx, "sub", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(n.Addr(), rt.Secret).Services(ctx); status(err) != 403 {
		t.Errorf("GET /v1/services with a runtime token = %v, want 403", err)
	}

	b := browsertest.Browser(t)
	page := func(token, id string) (context.Context, context.CancelFunc) {
		tab, cancel := chromedp.NewContext(b)
		if err := chromedp.Do(tab, chromedp.Navigate("http://"+n.Addr()+"/runtime/browser#token="+token+"&runtime="+id+"&name=test")); err != nil {
			t.Fatal(err)
		}
		return tab, cancel
	}
	listed := func(id string) (api.Runtime, bool) {
		rs, err := n.op.Runtimes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.ID == "browser/"+id {
				return r, true
			}
		}
		return api.Runtime{}, false
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	_, closeGood := page(rt.Secret, "good")
	waitFor("the page with a runtime token listed, enabled", func() bool {
		r, ok := listed("good")
		return ok && r.Enabled && r.Kind == api.RuntimeBrowser && r.Language == "javascript" && r.Driver == "browser"
	})
	first, _ := listed("good")
	_, closeBad := page(sub.Secret, "bad")
	defer closeBad()
	time.Sleep(3 * time.Second)
	if r, ok := listed("bad"); ok {
		t.Errorf("a page with a submitter's token is listed: %+v", r)
	}
	if r, _ := listed("good"); !r.Enabled || r.Since == nil || !r.Since.Equal(*first.Since) {
		t.Errorf("after 3s with 1s server timeouts: %+v, want the page connected since %v without a break", r, first.Since)
	}
	closeGood()
	waitFor("the closed page listed as gone", func() bool {
		r, ok := listed("good")
		return ok && !r.Enabled && r.Reason != ""
	})
}

// httpTimeout is a node config duration.
func httpTimeout(t testing.TB, s string) manifest.Duration {
	t.Helper()
	d, err := manifest.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
