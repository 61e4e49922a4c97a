package action

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/contract"
)

func acts(kindParams ...string) contract.Output {
	var out contract.Output
	for i := 0; i < len(kindParams); i += 2 {
		a := contract.Action{Kind: kindParams[i]}
		if p := kindParams[i+1]; p != "" {
			a.Params = json.RawMessage(p)
		}
		out.Actions = append(out.Actions, a)
	}
	return out
}

func TestCheck(t *testing.T) {
	all := Rules{Kinds: []string{"http", "emit", "publish", "log", "submit", "transfer"}}
	capped := Rules{
		Kinds:  []string{"submit", "http"},
		PerRun: 2, PerRunRule: "capabilities.caps.actions_per_run",
		Caps:     map[string]map[string]float64{"submit": {"amount": 1000}},
		CapsRule: "capabilities.caps.params",
	}
	tests := []struct {
		name  string
		rules Rules
		out   contract.Output
		want  []string // problems, in order; none: valid
	}{
		{"valid built-ins", all, acts(
			"http", `{"method":"POST","url":"https://api.example/x","headers":{"X-A":"1"},"body":{"a":[1]}}`,
			"emit", `{"topic":"prices.updated","message":{"p":1}}`,
			"publish", `{"topic":"a","message":null}`,
			"log", `{"message":"hi","level":"warn","fields":{"n":1}}`,
			"submit", `{"target":"vault-7","amount":5}`,
			"transfer", `[1,2,3]`,
		), nil},
		{"undeclared", capped, acts("submit", `{}`, "transfer", `{}`), []string{
			`actions[1].kind: "transfer" is not declared in capabilities.actions (submit, http)`}},
		{"nothing declared", Rules{}, acts("log", `{"message":"x"}`), []string{
			`actions[0].kind: "log" is not declared in capabilities.actions (none)`}},
		{"http bad", all, acts("http", `{"method":"get","url":"ftp://x/","headers":{"A":1,"bad name":"x"},"timeout":3}`), []string{
			"actions[0].params.timeout: unknown field (kind http takes method, url, headers, body)",
			"actions[0].params.method: must be one of GET HEAD POST PUT PATCH DELETE",
			"actions[0].params.url: must be an absolute http or https URL",
			`actions[0].params.headers["A"]: must be a string`,
			`actions[0].params.headers["bad name"]: must be a valid header name`}},
		{"http relative url", all, acts("http", `{"method":"GET","url":"/x"}`), []string{
			"actions[0].params.url: must be an absolute http or https URL"}},
		{"http credentials", all, acts("http", `{"method":"GET","url":"https://u:p@h/"}`), []string{
			"actions[0].params.url: must be an absolute http or https URL"}},
		{"http missing", all, acts("http", `{}`), []string{
			"actions[0].params.method: required", "actions[0].params.url: required"}},
		{"http no params", all, acts("http", ``), []string{
			`actions[0].params: must be a JSON object for kind http {"method", "url", "headers"?, "body"?}`}},
		{"http header injection", all, acts("http", `{"method":"GET","url":"http://h/","headers":{"A":"x\r\nB: y"}}`), []string{
			`actions[0].params.headers["A"]: must be at most 8192 bytes without CR, LF or NUL`}},
		{"duplicate key", all, acts("http", `{"method":"GET","url":"http://h/","url":"http://other/"}`), []string{
			"actions[0].params.url: duplicate key"}},
		{"emit bad", all, acts("emit", `{"topic":"a.*","extra":1}`), []string{
			"actions[0].params.extra: unknown field (kind emit takes topic, message)",
			"actions[0].params.topic: tokens are made of [a-z0-9_-] (no wildcards, no upper case), found '*'",
			"actions[0].params.message: required (any JSON value)"}},
		{"log bad", all, acts("log", `{"message":3,"level":"loud","fields":[]}`), []string{
			"actions[0].params.message: must be a string",
			"actions[0].params.level: must be one of debug info warn error",
			"actions[0].params.fields: must be a JSON object"}},
		{"submit not an object", all, acts("submit", `"x"`, "submit", `{"target":7}`), []string{
			"actions[0].params: must be a JSON object for kind submit",
			"actions[1].params.target: must be a string"}},
		{"within caps", capped, acts("submit", `{"amount":1000}`, "submit", `{"amount":"999.5"}`), nil},
		{"cap absent param", capped, acts("submit", `{"to":"x"}`), nil},
		{"cap exceeded", capped, acts("submit", `{"amount":1000.000001}`, "submit", `{"amount":"1e4"}`), []string{
			"actions[0].params.amount: 1000.000001 is above the cap 1000 (capabilities.caps.params.submit.amount)",
			`actions[1].params.amount: "1e4" is above the cap 1000 (capabilities.caps.params.submit.amount)`}},
		{"cap not a number", capped, acts("submit", `{"amount":"lots"}`, "submit", `{"amount":null}`), []string{
			"actions[0].params.amount: must be a number, or a string holding a decimal number, because capabilities.caps.params.submit.amount caps it",
			"actions[1].params.amount: must be a number, or a string holding a decimal number, because capabilities.caps.params.submit.amount caps it"}},
		{"cap huge exponent", capped, acts("submit", `{"amount":1e999999999}`), []string{
			"actions[0].params.amount: 1e999999999 is above the cap 1000 (capabilities.caps.params.submit.amount)"}},
		{"cap long number", capped, acts("submit", `{"amount":1.`+strings.Repeat("3", 200_000)+`}`, "submit", `{"amount":"`+strings.Repeat("9", 101)+`"}`), []string{
			"actions[0].params.amount: must be a number of at most 100 characters (this one has 200002), because capabilities.caps.params.submit.amount caps it",
			"actions[1].params.amount: must be a number of at most 100 characters (this one has 101), because capabilities.caps.params.submit.amount caps it"}},
		{"cap number at the length bound", capped, acts("submit", `{"amount":"0.`+strings.Repeat("1", 98)+`"}`), nil},
		{"per run", capped, acts("submit", `{}`, "submit", `{}`, "http", `{"method":"GET","url":"http://h/"}`), []string{
			"actions: 3 actions, above the cap of 2 per run (capabilities.caps.actions_per_run)"}},
		{"emits unchecked", Rules{}, contract.Output{Emit: []contract.Emit{{Topic: "t", Message: json.RawMessage(`1`)}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rules.Check(tt.out)
			var v Violation
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.As(err, &v) {
				t.Fatalf("Check = %v, want a Violation", err)
			}
			var got []string
			for _, p := range v {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Check problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestViolationErrorBounded(t *testing.T) {
	var out contract.Output
	for range 40 {
		out.Actions = append(out.Actions, contract.Action{Kind: "nope"})
	}
	err := Rules{}.Check(out)
	if lines := strings.Split(err.Error(), "\n"); len(lines) != maxReported+1 || lines[maxReported] != "… and 24 more" {
		t.Errorf("Error() has %d lines ending %q, want %d problems and a count of the rest", len(lines), lines[len(lines)-1], maxReported)
	}
}

// TestCapLongNumberQuick: a capped param of a million digits is refused
// without being parsed. Parsing it with big.Rat took seconds; the bound
// is loose so that a busy machine does not fail the test.
func TestCapLongNumberQuick(t *testing.T) {
	rules := Rules{Kinds: []string{Submit}, Caps: map[string]map[string]float64{Submit: {"amount": 1000}}}
	out := acts(Submit, `{"amount":1.`+strings.Repeat("3", 1_000_000)+`}`)
	start := time.Now()
	err := rules.Check(out)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Check took %v", d)
	}
	if err == nil || !strings.Contains(err.Error(), "must be a number of at most 100 characters") {
		t.Errorf("Check = %v, want the number refused for its length", err)
	}
}
