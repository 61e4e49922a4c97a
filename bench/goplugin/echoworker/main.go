// Command echoworker is the process driver's side of the benchmark: the same
// echo handler as a runtime-protocol worker (runtimes/go), run as an exec
// service.
package main

import (
	"context"

	"github.com/andromeda-runner/andromeda/bench/goplugin"
	"github.com/andromeda-runner/andromeda/contract"
	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

func main() {
	worker.Serve(func(_ context.Context, in contract.Input) (contract.Output, error) {
		return goplugin.EchoInput(in)
	})
}
