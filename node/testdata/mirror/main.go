// Command mirror is a test reactor: it returns its message as its output,
// so a test decides exactly what a real guest asks the node for. Without
// a message it does nothing and says so. Build: GOOS=wasip1 GOARCH=wasm
// go build -buildmode=c-shared -o main.wasm .
package main

import (
	"encoding/json"

	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(mirror) }

func main() {}

func mirror(in andromeda.Input) andromeda.Output {
	var out andromeda.Output
	if len(in.Message) == 0 {
		return andromeda.Noop("no message to return")
	}
	if err := json.Unmarshal(in.Message, &out); err != nil {
		return andromeda.Noop("message is not an output: " + err.Error())
	}
	return out
}
