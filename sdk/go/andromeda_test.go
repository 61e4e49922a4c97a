package andromeda

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

func TestRunCommand(t *testing.T) {
	echo := func(in Input) Output {
		return Output{Emit: []Emit{{Topic: "echo", Message: in.Message}}}
	}
	for _, c := range []struct {
		name       string
		h          Handler
		in         string
		wantStatus int
		wantOut    string // exact stdout
		wantErr    string // substring of stderr
	}{
		{"echo", echo, `{"run_id":"r1","message":{"a":"<b> & é"},"unknown_field":1}`, 0,
			`{"emit":[{"topic":"echo","message":{"a":"<b> & é"}}]}` + "\n", ""},
		{"noop", func(Input) Output { return Noop("idle") }, `{}`, 0, `{"noop":"idle"}` + "\n", ""},
		{"empty output is still written", func(Input) Output { return Output{} }, `{}`, 0, "{}\n", ""},
		{"bad input", echo, `{"run_id":`, 1, "", "andromeda: decode input"},
		{"empty input", echo, ``, 1, "", "andromeda: decode input"},
		{"bad output", func(Input) Output { return Output{Actions: []Action{{Kind: "x", Params: json.RawMessage(`{`)}}} }, `{}`, 1, "", "andromeda: encode output"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := runCommand(c.h, strings.NewReader(c.in), &stdout, &stderr)
			if status != c.wantStatus || stdout.String() != c.wantOut || !strings.Contains(stderr.String(), c.wantErr) {
				t.Errorf("runCommand(%q) = %d, stdout %q, stderr %q; want %d, %q, stderr containing %q",
					c.in, status, stdout.String(), stderr.String(), c.wantStatus, c.wantOut, c.wantErr)
			}
		})
	}
}

func TestHelpers(t *testing.T) {
	for _, c := range []struct {
		name string
		out  Output
		want string
	}{
		{"noop", Noop("waiting"), `{"noop":"waiting"}`},
		{"act", Act("http", map[string]any{"url": "https://example.com/?a=1&b=<2>"}), `{"actions":[{"kind":"http","params":{"url":"https://example.com/?a=1&b=<2>"}}]}`},
		{"act raw params", Act("log", json.RawMessage(`{"x":1}`)), `{"actions":[{"kind":"log","params":{"x":1}}]}`},
		{"act no params", Act("log", nil), `{"actions":[{"kind":"log"}]}`},
		{"publish", Publish("prices.updated", []int{1, 2}), `{"emit":[{"topic":"prices.updated","message":[1,2]}]}`},
		{"send", Send("out", "hi"), `{"emit":[{"port":"out","message":"hi"}]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false) // as serve encodes
			err := enc.Encode(c.out)
			if got := strings.TrimSuffix(buf.String(), "\n"); err != nil || got != c.want {
				t.Errorf("encoded %s, %v; want %s", got, err, c.want)
			}
			if err := c.out.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "andromeda.Act: encode chan int") {
			t.Errorf("Act with unencodable params: recover() = %v, want a panic naming Act and the type", r)
		}
	}()
	Act("bad", make(chan int))
}

// TestNativeCommand builds a service that calls Handle from main for the
// host and runs it as a process: the command shape without WebAssembly.
func TestNativeCommand(t *testing.T) {
	gobin, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go command is not on PATH")
	bin := filepath.Join(t.TempDir(), "mainform")
	if out, err := exec.Command(gobin, "build", "-o", bin, "./testdata/mainform").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, c := range []struct {
		name, in   string
		wantStatus int
		wantOut    string
		wantErr    string
	}{
		{"noop", `{"run_id":"r7"}`, 0, `{"noop":"nothing for r7"}` + "\n", ""},
		{"act", `{"run_id":"r8","message":"act"}`, 0, `{"actions":[{"kind":"log","params":{"run":"r8"}}]}` + "\n", ""},
		{"panic", `{"message":"panic"}`, 2, "", "panic: sdk test panic"},
		{"bad input", `not json`, 1, "", "andromeda: decode input"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin)
			cmd.Stdin = strings.NewReader(c.in)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run()
			if status := cmd.ProcessState.ExitCode(); status != c.wantStatus || stdout.String() != c.wantOut || !strings.Contains(stderr.String(), c.wantErr) {
				t.Errorf("run with %q = %d, stdout %q, stderr %q; want %d, %q, stderr containing %q",
					c.in, status, stdout.String(), stderr.String(), c.wantStatus, c.wantOut, c.wantErr)
			}
		})
	}
}
