// Package andromeda carries the source files the binary needs at run time:
// the demo services under examples/ and the guest SDK (sdk/go, contract, and
// strictdoc/strictjson, which contract reads JSON with) they are compiled
// against, so `andromeda serve --demo` works from any directory.
// The runner itself lives in the sub-packages; see README.md.
package andromeda

import "embed"

// Sources holds examples/, sdk/go, contract and strictdoc/strictjson as
// embedded files.
//
//go:embed examples contract/*.go sdk/go/*.go strictdoc/strictjson/*.go
var Sources embed.FS

// Module is this module's path, which the demo build declares.
const Module = "github.com/andromeda-runner/andromeda"
