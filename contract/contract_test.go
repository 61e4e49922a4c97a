package contract_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/contract"
)

func TestParseOutput(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error  // sentinel the error wraps, nil for success
		detail   string // substring of the error
	}{
		{"noop", `{"noop":"nothing to do"}`, nil, ""},
		{"action", `{"actions":[{"kind":"http","params":{"url":"x"}}]}`, nil, ""},
		{"emit topic", `{"emit":[{"topic":"a.b","message":1}]}`, nil, ""},
		{"state with noop", `{"state":{"set":{"k":1}},"noop":"saved"}`, nil, ""},
		{"white space", " \n{\"noop\":\"x\"}\n ", nil, ""},
		{"empty object", `{}`, contract.ErrNoReason, "must say why"},
		{"blank noop", `{"noop":"   "}`, contract.ErrNoReason, ""},
		{"state alone", `{"state":{"set":{"k":1}}}`, contract.ErrNoReason, "state change alone"},
		{"empty", ``, contract.ErrBadOutput, "output is not a valid contract object: must not be empty"},
		{"blank", " \n", contract.ErrBadOutput, "must not be empty"},
		{"not json", `hello`, contract.ErrBadOutput, "json syntax: line 1, column 1: invalid character 'h'"},
		{"array", `[]`, contract.ErrBadOutput, "output is not a valid contract object: must be a mapping, not a list"},
		{"wrong type", `{"actions":[{"kind":"log"},{"kind":1}]}`, contract.ErrBadOutput, "actions[1].kind: must be a string (quote 1 to make it one)"},
		{"unknown field", `{"noop":"x","nope":1}`, contract.ErrBadOutput, `output is not a valid contract object: nope: unknown field "nope"`},
		{"unknown nested field", `{"actions":[{"kind":"log","parms":{}}]}`, contract.ErrBadOutput, `actions[0].parms: unknown field "parms"`},
		{"trailing", `{"noop":"x"}{"noop":"y"}`, contract.ErrBadOutput, "json syntax: line 1, column 13: trailing data after the document"},
		{"closing bracket after", `{"noop":"x"}}`, contract.ErrBadOutput, "trailing data"},
		{"action without kind", `{"actions":[{"params":{}}]}`, contract.ErrBadOutput, "actions[0].kind"},
		{"emit both", `{"emit":[{"topic":"a","port":"b","message":1}]}`, contract.ErrBadOutput, "emit[0]"},
		{"emit neither", `{"emit":[{"message":1}]}`, contract.ErrBadOutput, "exactly one"},
		{"empty state key", `{"noop":"x","state":{"set":{"":1}}}`, contract.ErrBadOutput, "must not be empty"},
		{"http alone", `{"http":{"status":201,"headers":{"X-Id":"7"},"body":{"ok":true}}}`, nil, ""},
		{"http default status", `{"http":{"body":"pong"}}`, nil, ""},
		{"http status low", `{"http":{"status":199}}`, contract.ErrBadOutput, "http.status: must be from 200 to 599, got 199"},
		{"http status high", `{"http":{"status":600}}`, contract.ErrBadOutput, "http.status: must be from 200 to 599"},
		{"http header name", `{"http":{"headers":{"X Y":"1"}}}`, contract.ErrBadOutput, `http.headers["X Y"]: a header name must be 1 to 128 of [A-Za-z0-9-]`},
		{"http framing header", `{"http":{"headers":{"Content-Length":"1"}}}`, contract.ErrBadOutput, "http.headers.Content-Length: set by the node"},
		{"http node header", `{"http":{"headers":{"andromeda-run":"x"}}}`, contract.ErrBadOutput, "set by the node"},
		{"http header value", `{"http":{"headers":{"X-A":"a\r\nSet-Cookie: b"}}}`, contract.ErrBadOutput, "one line"},
		{"http body", `{"http":{"body":"` + strings.Repeat("b", contract.MaxHTTPBody) + `"}}`, contract.ErrBadOutput, "http.body: at most 1048576 bytes"},
		{"long delete key", `{"noop":"x","state":{"delete":["` + strings.Repeat("k", 300) + `"]}}`, contract.ErrBadOutput, "state.delete[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := contract.ParseOutput([]byte(tc.in))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("ParseOutput(%q) = %v, want nil", tc.in, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("ParseOutput(%q) = %v, want %v mentioning %q", tc.in, err, tc.want, tc.detail)
			}
		})
	}
}

func TestTooManyActions(t *testing.T) {
	out := contract.Output{}
	for range contract.MaxActions + 1 {
		out.Actions = append(out.Actions, contract.Action{Kind: "log"})
	}
	b, _ := json.Marshal(out)
	if _, err := contract.ParseOutput(b); err == nil || !strings.Contains(err.Error(), "at most 256") {
		t.Fatalf("257 actions: %v", err)
	}
}

// FuzzParseOutput feeds guest output (untrusted) to the parser: it must never
// panic, and whatever it accepts must validate and survive a round trip.
func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{`{"noop":"x"}`, `{"actions":[{"kind":"http"}]}`, `{"emit":[{"topic":"t","message":null}]}`, `{"state":{"set":{"a":1},"delete":["b"]},"noop":"y"}`, `{}`, `[`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := contract.ParseOutput(b)
		if err != nil {
			return
		}
		if err := out.Validate(); err != nil {
			t.Fatalf("accepted output does not validate: %v", err)
		}
		again, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := contract.ParseOutput(again); err != nil {
			t.Fatalf("round trip of %q: %v", again, err)
		}
	})
}
