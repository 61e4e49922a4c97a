// Command usageguest is a Go service that reports usage counters with the
// SDK's Usage; the wasm driver's tests build it for wasip1. Its noop
// reason lists Usage's answers: nil for rows 1200 and rows 34, an error for
// a bad name and a negative amount.
package main

import (
	"fmt"

	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() {
	andromeda.Handle(func(in andromeda.Input) andromeda.Output {
		errs := []error{
			andromeda.Usage("rows", 1200),
			andromeda.Usage("rows", 34),
			andromeda.Usage("Bad Name", 1),
			andromeda.Usage("neg", -1),
		}
		return andromeda.Noop(fmt.Sprint(errs))
	})
}

func main() {}
