package browser

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/andromeda-runner/andromeda/runtimes/node"
)

//go:embed page/index.html page/style.css page/main.js page/worker.js
var pageFiles embed.FS

// asset is one file the hub serves, with its headers.
type asset struct {
	body        []byte
	contentType string
	csp         string
	etag        string
}

// assets builds the page (its style and script inline, allowed by their
// hashes, so that it needs nothing else and nothing from the internet)
// and the module worker (the Node.js shim's loader section followed by
// worker.js). Only the worker may evaluate code (new Function): the page
// may not, and neither may open connections but the page's own WebSocket.
func assets() (page, worker asset, err error) {
	read := func(name string) []byte {
		b, e := pageFiles.ReadFile("page/" + name)
		err = errors.Join(err, e)
		return b
	}
	html, style, script, work := read("index.html"), read("style.css"), read("main.js"), read("worker.js")
	if err != nil {
		return page, worker, err
	}
	if len(node.Loader) == 0 {
		return page, worker, errors.New("the Node.js shim has no module loader section")
	}
	if bytes.Contains(script, []byte("</")) || bytes.Contains(style, []byte("</")) {
		return page, worker, errors.New("the page's script or style holds </, which would end its element")
	}
	html = bytes.Replace(html, []byte("/*STYLE*/"), style, 1)
	html = bytes.Replace(html, []byte("/*SCRIPT*/"), script, 1)
	page = newAsset(html, "text/html; charset=utf-8",
		"default-src 'none'; script-src "+hash(script)+"; style-src "+hash(style)+
			"; connect-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	body := append(append(append([]byte("'use strict';\n"), node.Loader...), '\n'), work...)
	worker = newAsset(body, "text/javascript; charset=utf-8", "default-src 'none'; script-src 'unsafe-eval'")
	return page, worker, nil
}

func newAsset(body []byte, contentType, csp string) asset {
	sum := sha256.Sum256(body)
	return asset{body: body, contentType: contentType, csp: csp, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// hash is the CSP source that allows an inline element with content b.
func hash(b []byte) string {
	sum := sha256.Sum256(b)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func (a *asset) serve(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Content-Security-Policy", a.csp)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", a.etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
