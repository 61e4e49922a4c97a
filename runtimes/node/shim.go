// Package node ships the Node.js shim of the runtime protocol (shim.cjs)
// inside the Go binary, so that the process driver can write it out for
// its workers. The shim is the JavaScript in this directory; the package
// holds nothing else.
package node

import _ "embed"

// Shim is the source of shim.cjs, run as `node shim.cjs` in a worker.
//
//go:embed shim.cjs
var Shim []byte

// File is the name the shim must have on disk: the .cjs extension makes
// Node load it as CommonJS whatever package.json surrounds it.
const File = "shim.cjs"
