// Command hook is a test reactor for webhooks: the body of the request
// that fires it, when a JSON object, is its output, so a test decides
// exactly how the webhook is answered; the request itself (method, path,
// headers, body) is returned in an http answer when the body is
// {"echo": true}. Build: GOOS=wasip1 GOARCH=wasm go build
// -buildmode=c-shared -o main.wasm .
package main

import (
	"encoding/json"

	"github.com/andromeda-runner/andromeda/contract"
	andromeda "github.com/andromeda-runner/andromeda/sdk/go"
)

func init() { andromeda.Handle(hook) }

func main() {}

func hook(in andromeda.Input) andromeda.Output {
	var req contract.HTTPRequest
	if err := json.Unmarshal(in.Message, &req); err != nil {
		return andromeda.Noop("message is not a request: " + err.Error())
	}
	var echo struct {
		Echo bool `json:"echo"`
	}
	if json.Unmarshal(req.Body, &echo) == nil && echo.Echo {
		seen, _ := json.Marshal(map[string]any{"request": req, "trigger": in.Trigger})
		return andromeda.Output{HTTP: &contract.HTTPResponse{Status: 200, Body: seen}}
	}
	var out andromeda.Output
	if len(req.Body) == 0 || json.Unmarshal(req.Body, &out) != nil {
		return andromeda.Noop("body is not an output")
	}
	return out
}
