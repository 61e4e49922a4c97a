// Command mainform is a service that calls Handle from main, the form a
// command-only service may use; the SDK's tests build it natively.
package main

import andromeda "github.com/andromeda-runner/andromeda/sdk/go"

func main() {
	andromeda.Handle(func(in andromeda.Input) andromeda.Output {
		switch string(in.Message) {
		case `"panic"`:
			panic("sdk test panic")
		case `"act"`:
			return andromeda.Act("log", map[string]string{"run": in.RunID})
		}
		return andromeda.Noop("nothing for " + in.RunID)
	})
	panic("unreachable: Handle returned in a command")
}
