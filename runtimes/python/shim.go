// Package python ships the Python shim of the runtime protocol (shim.py)
// inside the Go binary, so that the process driver can write it out for its
// workers. The shim is the Python in this directory; the package holds
// nothing else.
package python

import _ "embed"

// Shim is the source of shim.py, run as `python3 -I -S -B shim.py` in a
// worker: isolated mode (no PYTHON* variables, no user site), no site
// module (no host site-packages: a service sees the standard library and
// its own dependency directory only), no .pyc writes.
//
//go:embed shim.py
var Shim []byte

// File is the name of the shim on disk.
const File = "shim.py"
