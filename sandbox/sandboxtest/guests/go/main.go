// Command guest is the Go implementation of the sandboxtest conformance guest
// (see the sandboxtest package documentation for the protocol): the
// operations of package guest served through sdk/go. It builds as a wasip1
// command, a wasip1 reactor (-buildmode=c-shared) and a native command from
// the same source.
package main

import (
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest/guest"
	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(handle) }

func main() {}

// handle performs the operation the input names; an unknown one comes back
// as guest.Do's "unknown op" noop.
func handle(in andromeda.Input) andromeda.Output {
	out, _ := guest.Do(in)
	return out
}
