package python_test

import (
	"os"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/runtimes/internal/shimtest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
)

// TestMain lets the process driver re-execute this test binary as its
// sandbox init.
func TestMain(m *testing.M) {
	process.MaybeInit()
	os.Exit(m.Run())
}

// service answers with a token of its worker process, so that a test can
// tell a worker that lived on from a new one, unless its input's message
// asks for something that used to kill the worker.
const service = `import os

TOKEN = os.urandom(8).hex()


def body(input):
    op = input['message'].get('op') if isinstance(input['message'], dict) else None
    if op == 'deep-output':
        v = []
        for _ in range(100_000):
            v = [v]
        return {'noop': 'x', 'actions': [{'kind': 'k', 'params': v}]}
    if op == 'circular-output':
        d = {}
        d['self'] = d
        return {'noop': 'x', 'actions': [{'kind': 'k', 'params': d}]}
    if op == 'object-output':
        return {'noop': 'x', 'actions': [{'kind': 'k', 'params': object()}]}
    if op == 'recurse':
        def f(n):
            return f(n + 1)
        return f(0)
    if op == 'broken-exception':
        class Broken(Exception):
            def __str__(self):
                raise ValueError('no string for you')
        raise Broken()
    return {'noop': 'alive ' + TOKEN}
`

// nested returns a JSON message nested depth arrays deep.
func nested(depth int) string {
	return `{"op":"deep-input","v":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

// TestNestingAndUnencodable sends the Python shim input nested deeper than
// Python's recursion limit and has the service return output json cannot
// encode: each invocation gets the protocol's error, in sync and async
// services alike, and the worker lives on.
func TestNestingAndUnencodable(t *testing.T) {
	d := shimtest.Driver(t, process.LangPython)

	for _, kind := range []struct{ name, source string }{
		{"sync", service + "\n\ndef handle(input):\n    return body(input)\n"},
		{"async", service + "\n\nasync def handle(input):\n    return body(input)\n"},
	} {
		t.Run(kind.name, func(t *testing.T) {
			call, _, same := shimtest.Worker(t, d, process.LangPython, "nesting-"+kind.name, "main.py", kind.source)
			for _, c := range []struct {
				name, message, detail string
			}{
				{"input-1000-deep", nested(1000), "bad_input: input nested deeper than Python's recursion limit"},
				{"input-9000-deep", nested(9000), "bad_input: input nested deeper than Python's recursion limit"},
				{"deep-output", `{"op":"deep-output"}`, "encode output: nested deeper than Python's recursion limit"},
				{"circular-output", `{"op":"circular-output"}`, "encode output: Circular reference detected"},
				{"object-output", `{"op":"object-output"}`, "encode output: Object of type object is not JSON serializable"},
				{"handler-recursion", `{"op":"recurse"}`, "maximum recursion depth exceeded"},
				{"broken-exception", `{"op":"broken-exception"}`, "Broken"},
			} {
				t.Run(c.name, func(t *testing.T) {
					r := call(c.message)
					if r.Outcome != sandbox.Crashed || !strings.Contains(r.Error, c.detail) {
						t.Errorf("outcome %s (%.300s), want crashed with %q", r.Outcome, r.Error, c.detail)
					}
					same(t)
				})
			}
		})
	}
}
