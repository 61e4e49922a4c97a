// Command greeter is a demo reactor service: `andromeda fire greeter
// --input '{"name": "Ada"}'` emits a greeting. Build: GOOS=wasip1
// GOARCH=wasm go build -buildmode=c-shared -o main.wasm .
package main

import (
	"encoding/json"
	"strings"

	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(greet) }

func main() {}

func greet(in andromeda.Input) andromeda.Output {
	var msg struct {
		Name string `json:"name"`
	}
	if len(in.Message) > 0 {
		if err := json.Unmarshal(in.Message, &msg); err != nil {
			return andromeda.Noop("message is not {\"name\": ...}: " + err.Error())
		}
	}
	name := strings.TrimSpace(msg.Name)
	if name == "" {
		return andromeda.Noop("no name given: fire with --input '{\"name\": \"Ada\"}'")
	}
	return andromeda.Publish("greetings", map[string]string{"text": "Hello, " + name + "!"})
}
