package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
)

// TestPrintRejectedRun: runs show prints each broken rule of a rejected
// run on its own line, and labels its output as refused, not pending.
func TestPrintRejectedRun(t *testing.T) {
	r := api.Run{
		ID: "r1", Service: "s", Version: "1.0.0", Outcome: "rejected",
		Error: "actions[0].params.url: must be an absolute http or https URL\n" +
			`actions[1].kind: "transfer" is not declared in capabilities.actions (submit, http)`,
		Output: &contract.Output{Actions: []contract.Action{{Kind: "http", Params: json.RawMessage(`{"url":"/x"}`)}, {Kind: "transfer"}}},
	}
	var b bytes.Buffer
	printRun(&b, r)
	out := b.String()
	for _, want := range []string{
		"Error:     actions[0].params.url: must be an absolute http or https URL\n",
		"           actions[1].kind: \"transfer\" is not declared in capabilities.actions (submit, http)\n",
		"Output (rejected: none of it took effect):",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("printRun output lacks %q:\n%s", want, out)
		}
	}
}
