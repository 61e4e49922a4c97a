// Command heartbeat is a demo command-mode service: each run starts a fresh
// instance, reads its beat count from state, and logs every fifth beat.
// Build: GOOS=wasip1 GOARCH=wasm go build -o main.wasm .
package main

import (
	"encoding/json"
	"fmt"

	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(beat) }

func main() {}

func beat(in andromeda.Input) andromeda.Output {
	var n int
	if raw, ok := in.State["beats"]; ok {
		json.Unmarshal(raw, &n)
	}
	n++
	out := andromeda.Output{State: &andromeda.StateChange{Set: map[string]json.RawMessage{
		"beats": json.RawMessage(fmt.Sprint(n)),
	}}}
	if n%5 != 0 {
		out.Noop = fmt.Sprintf("beat %d: only every fifth beat is logged", n)
		return out
	}
	out.Actions = andromeda.Act("log", map[string]any{"message": fmt.Sprintf("%d beats and counting", n)}).Actions
	return out
}
