// Command toyrt is a language runtime for the node's tests of runtimes
// registered by descriptor: it speaks the runtime protocol through
// runtimes/go and runs services written in "toy", a one-file language.
// A toy file's first line is a greeting: each invocation answers
// {"noop": "<greeting> <message.name>"}. A file whose first line is
// "guest" is the conformance guest (the sandboxtest "do" table). A line
// "test: fail REASON" makes the service's self-test fail with REASON.
// With --broken, or built with -ldflags "-X main.brokenDefault=yes", it
// answers every invocation with a noop, which the conformance kit fails.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"

	"github.com/andromeda-runner/andromeda/contract"
	worker "github.com/andromeda-runner/andromeda/runtimes/go"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest/guest"
)

// brokenDefault, set at link time, makes the runtime broken without --broken.
var brokenDefault string

var (
	greeting string
	isGuest  bool
	failWith string
)

func main() {
	broken := brokenDefault == "yes" || len(os.Args) > 1 && os.Args[1] == "--broken"
	worker.ServeWith(func(ctx context.Context, in contract.Input) (contract.Output, error) {
		switch {
		case broken:
			return contract.Output{Noop: "broken"}, nil
		case isGuest:
			// The operations that need the runtime (wait, log), then
			// package guest's.
			var op struct{ Do, Level, Message string }
			_ = json.Unmarshal(in.Message, &op)
			switch op.Do {
			case "wait":
				<-ctx.Done()
				return contract.Output{}, ctx.Err()
			case "log":
				worker.Log(ctx, op.Level, op.Message)
				return guest.Noop("logged"), nil
			}
			out, _ := guest.Do(in)
			return out, nil
		}
		var msg struct{ Name string }
		_ = json.Unmarshal(in.Message, &msg)
		return contract.Output{Noop: strings.TrimSpace(greeting + " " + msg.Name)}, nil
	}, worker.Options{
		Load: func(mods []worker.Module) error {
			if len(mods) != 1 {
				return errors.New("toy runs one module")
			}
			b, err := os.ReadFile(mods[0].Entry)
			if err != nil {
				return err
			}
			lines := strings.Split(string(b), "\n")
			greeting, isGuest = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[0]) == "guest"
			for _, l := range lines[1:] {
				if r, ok := strings.CutPrefix(l, "test: fail "); ok {
					failWith = r
				}
			}
			return nil
		},
		Test: func(ctx context.Context) error {
			if failWith != "" {
				return errors.New(failWith)
			}
			return nil
		},
		Offer: func(ctx context.Context) (map[string]any, error) {
			return map[string]any{"toy.flavour": "vanilla", "toy.max_lines": 1}, nil
		},
	})
}
