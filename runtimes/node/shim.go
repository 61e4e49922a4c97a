// Package node ships the Node.js shim of the runtime protocol (shim.cjs)
// inside the Go binary, so that the process driver can write it out for
// its workers, and the shim's module loader section (Loader), which the
// browser runtime runs in its page. The shim is the JavaScript in this
// directory; the package holds nothing else.
package node

import (
	"bytes"
	_ "embed"
)

// Shim is the source of shim.cjs, run as `node shim.cjs` in a worker.
//
//go:embed shim.cjs
var Shim []byte

// File is the name the shim must have on disk: the .cjs extension makes
// Node load it as CommonJS whatever package.json surrounds it.
const File = "shim.cjs"

// The lines that open and close the module loader section of shim.cjs.
const (
	loaderBegin = "// ---- andromeda module loader: begin ----\n"
	loaderEnd   = "// ---- andromeda module loader: end ----\n"
)

// Loader is the module loader section of shim.cjs, its begin and end lines
// included: plain JavaScript, free of Node's own APIs, that defines one
// name, loader (finding a module's handler, calling it, normalising its
// output, describing what it threw). The browser runtime runs it as it
// stands in its page, so that one source answers for a module in both
// runtimes. Empty only if shim.cjs lost its section lines, which the
// package's tests catch.
var Loader = section(Shim, loaderBegin, loaderEnd)

// section returns the part of src from the line begin to the line end,
// both included, or nil when either is missing.
func section(src []byte, begin, end string) []byte {
	i := bytes.Index(src, []byte(begin))
	if i < 0 || i > 0 && src[i-1] != '\n' {
		return nil
	}
	j := bytes.Index(src[i:], []byte(end))
	if j < 0 {
		return nil
	}
	return src[i : i+j+len(end) : i+j+len(end)]
}
