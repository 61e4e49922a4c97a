package node

import (
	"context"
	"net/http"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/runtimes/browser"
	"github.com/andromeda-runner/andromeda/server"
)

// The browser runtime (runtimes/browser): the node serves its page and
// WebSocket at /runtime/browser when browser.enabled, authenticates each
// page with a token of the runtime role, and lists the pages that
// connected among its runtimes (browser/<id>, enabled while connected).

// startBrowser makes the browser runtime's hub, closed when the node
// closes.
func (n *Node) startBrowser() error {
	if !n.cfg.Browser.Enabled {
		return nil
	}
	h, err := browser.New(browser.Config{
		Role: api.RoleRuntime,
		Authorize: func(ctx context.Context, token string) (string, error) {
			p, err := n.Authenticate(ctx, token)
			return p.Role, err
		},
		Logger: n.log.With("runtime", "browser"),
	})
	if err != nil {
		return err
	}
	n.browser = h
	n.undo = append(n.undo, h.Close)
	return nil
}

// BrowserRuntime implements server.BrowserBackend.
func (n *Node) BrowserRuntime() http.Handler {
	if n.browser == nil {
		return nil
	}
	return n.browser
}

var _ server.BrowserBackend = (*Node)(nil)

// browserRuntimes are the browser pages that connected, as runtimes.
func (n *Node) browserRuntimes() []api.Runtime {
	if n.browser == nil {
		return nil
	}
	var out []api.Runtime
	for _, info := range n.browser.Runtimes() {
		since := info.Since.UTC()
		r := api.Runtime{ID: "browser/" + info.ID, Name: "browser: " + info.Name, Version: info.Version, Driver: "browser",
			Language: browser.Language, Kind: api.RuntimeBrowser, Enabled: info.Connected, Since: &since}
		if !info.Connected {
			r.Reason = "its page went away at " + since.Format("2006-01-02 15:04:05Z")
			if info.Reason != "" {
				r.Reason += ": " + info.Reason
			}
		}
		out = append(out, r)
	}
	return out
}
