package process

import (
	"context"
	"fmt"
	"os"

	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/sandbox/jail"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

// MaybeInit turns the current process into a sandbox init when the process
// driver started it as one, and otherwise returns at once. The driver starts
// its workers (and its dependency installers) by re-executing the node's own
// binary (/proc/self/exe) in new namespaces; that copy must reach MaybeInit
// before it does anything else, so every binary that uses the driver calls
// it first thing in main (and a test binary first thing in TestMain):
//
//	func main() {
//		process.MaybeInit()
//		...
//	}
//
// In an init, MaybeInit never returns: it is jail.MaybeInit with the
// driver's built-in workers (the self-test's echo), which builds the
// sandbox and executes the worker in it, or exits with status 125 and the
// reason on standard error. Off Linux it returns at once.
func MaybeInit() {
	jail.MaybeInit(map[string]func() int{builtinEcho: serveEcho})
}

// builtinEcho is the built-in worker of the self-test (jail.Spec.Builtin).
const builtinEcho = "echo"

// serveEcho is the built-in worker of the self-test: it answers every
// invocation with its input's message as a noop reason, from inside a
// complete sandbox, and returns the exit status.
func serveEcho() int {
	err := worker.Run(context.Background(), func(_ context.Context, in contract.Input) (contract.Output, error) {
		return contract.Output{Noop: "self-test: " + string(in.Message)}, nil
	}, os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "andromeda self-test worker: %v\n", err)
		return 1
	}
	return 0
}
