// Package ui is the node's dashboard: one page of plain HTML, CSS and
// JavaScript, embedded in the binary and served at /ui/ on the API's
// listener. It holds no data and no secret: the page asks for a token,
// keeps it in the tab's sessionStorage (never in a URL, a cookie or the
// browser's history) and reads everything through the same API as the
// CLI, so a submitter's token shows that submitter's services and no
// others, and an operator's shows the actions only operators may take.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

//go:embed static
var static embed.FS

// Files are the dashboard's files, at the root of the returned FS.
func Files() fs.FS {
	f, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	return f
}

// policy is the pages' Content-Security-Policy: scripts, styles and
// connections from the node alone, nothing inline, no frames. A service's
// name, output or log line shown on a page is text, never markup; this
// makes sure it could not run even if it were.
const policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard under prefix (with its trailing slash,
// "/ui/"): the page at the prefix itself, its script and style beside it.
// Everything else under the prefix is 404.
func Handler(prefix string) http.Handler {
	files := Files()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", policy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		// The page is small and changes with the binary: never served
		// stale after an upgrade.
		h.Set("Cache-Control", "no-cache")
		name := "index.html"
		if r.URL.Path != prefix {
			name = path.Clean(r.URL.Path[min(len(r.URL.Path), len(prefix)):])
		}
		// Only the files themselves: no listing, no index.html by name.
		if st, err := fs.Stat(files, name); err != nil || st.IsDir() || name == "index.html" && r.URL.Path != prefix {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, files, name)
	})
}
