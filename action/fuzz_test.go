package action

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/contract"
)

// FuzzCheck: no params, of any kind, make Check panic or answer two ways,
// and every problem it reports names a path under the action.
func FuzzCheck(f *testing.F) {
	for _, seed := range []struct{ kind, params string }{
		{"http", `{"method":"POST","url":"https://h/x","headers":{"A":"b"},"body":[1]}`},
		{"http", `{"method":"GET","url":"http://u:p@h/","url":"x"}`},
		{"emit", `{"topic":"a.b","message":{}}`},
		{"log", `{"message":"m","level":"warn","fields":{"a":1}}`},
		{"submit", `{"amount":"1e999999999","target":"v"}`},
		{"submit", `{"amount":-0.0000001}`},
		{"submit", `{"amount":"0.` + strings.Repeat("1", 99) + `"}`},
		{"transfer", `[`},
		{"http", `{"headers":{"a b":"\r\n"}}`},
		{"log", ``},
	} {
		f.Add(seed.kind, seed.params)
	}
	rules := Rules{
		Kinds:  []string{HTTP, Emit, Publish, Log, Submit, "transfer"},
		PerRun: 1,
		Caps:   map[string]map[string]float64{Submit: {"amount": 1000}, "transfer": {"value": 0}},
	}
	f.Fuzz(func(t *testing.T, kind, params string) {
		a := contract.Action{Kind: kind}
		if params != "" {
			a.Params = json.RawMessage(params)
		}
		out := contract.Output{Actions: []contract.Action{a}}
		err1, err2 := rules.Check(out), rules.Check(out)
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Fatalf("Check answered %v, then %v", err1, err2)
		}
		var v Violation
		if err1 != nil && !errors.As(err1, &v) {
			t.Fatalf("Check = %T %v, want a Violation", err1, err1)
		}
		for _, p := range v {
			if len(p.Path) < len("actions[0]") || p.Path[:len("actions[0]")] != "actions[0]" || p.Rule == "" {
				t.Fatalf("problem %q: want a path under actions[0] and a rule", p)
			}
		}
		if Builtin(kind) && err1 == nil && !isObject(a.Params) {
			t.Fatalf("params %q of built-in kind %s accepted, but they are not an object", params, kind)
		}
	})
}
