package node_test

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
// asks for an output JSON cannot encode or throws what cannot be printed.
const service = `const TOKEN = require('node:crypto').randomBytes(8).toString('hex');

function body(input) {
  const m = input.message || {};
  switch (m.op) {
    case 'deep-input': {
      let depth = 0;
      for (let v = m.v; Array.isArray(v); v = v[0]) depth++;
      return { noop: 'depth ' + depth + ' ' + TOKEN };
    }
    case 'echo-deep-input':
      return { noop: 'x', actions: [{ kind: 'k', params: m.v }] };
    case 'deep-output': {
      let v = [];
      for (let i = 0; i < 100000; i++) v = [v];
      return { noop: 'x', actions: [{ kind: 'k', params: v }] };
    }
    case 'circular-output': {
      const c = {};
      c.self = c;
      return { noop: 'x', actions: [{ kind: 'k', params: c }] };
    }
    case 'bigint-output':
      return { noop: 'x', actions: [{ kind: 'k', params: { n: 10n } }] };
    case 'tojson-throws-null':
      return { noop: 'x', toJSON() { throw null; } };
    case 'throw-bare-object':
      throw Object.create(null);
    case 'throw-proxy':
      throw new Proxy({}, { get() { throw new Error('trap'); } });
    case 'then-getter-throws':
      return { get then() { throw new Error('then getter'); } };
  }
  return { noop: 'alive ' + TOKEN };
}
`

// nested returns a JSON message whose v is nested depth arrays deep.
func nested(op string, depth int) string {
	return `{"op":"` + op + `","v":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

// TestNestingAndUnencodable sends the Node.js shim deeply nested input and
// has the service return output JSON.stringify cannot encode or throw
// values that cannot be printed: each invocation gets the protocol's
// answer, for sync and async handlers alike, and the worker lives on.
func TestNestingAndUnencodable(t *testing.T) {
	d := shimtest.Driver(t, process.LangNode)

	for _, kind := range []struct{ name, source string }{
		{"sync", service + "\nexports.handle = (input) => body(input);\n"},
		{"async", service + "\nexports.handle = async (input) => body(input);\n"},
	} {
		t.Run(kind.name, func(t *testing.T) {
			call, token, same := shimtest.Worker(t, d, process.LangNode, "nesting-"+kind.name, "index.js", kind.source)
			for _, c := range []struct {
				name, message string
				outcome       sandbox.Outcome
				detail        string // in the error, or the noop reason
			}{
				// V8 decodes JSON without recursion: deep input is fine.
				{"input-9000-deep", nested("deep-input", 9000), sandbox.Noop, "depth 9000 " + token},
				{"echo-9000-deep", nested("echo-deep-input", 9000), "", ""}, // encoded or refused, the worker lives
				{"deep-output", `{"op":"deep-output"}`, sandbox.Crashed, "encode output: Maximum call stack size exceeded (the output is nested too deeply)"},
				{"circular-output", `{"op":"circular-output"}`, sandbox.Crashed, "encode output: Converting circular structure to JSON"},
				{"bigint-output", `{"op":"bigint-output"}`, sandbox.Crashed, "encode output: Do not know how to serialize a BigInt"},
				{"tojson-throws-null", `{"op":"tojson-throws-null"}`, sandbox.Crashed, "encode output: null"},
				{"throw-bare-object", `{"op":"throw-bare-object"}`, sandbox.Crashed, "a thrown value that cannot be converted to a string"},
				{"throw-proxy", `{"op":"throw-proxy"}`, sandbox.Crashed, "a thrown value that cannot be converted to a string"},
				{"then-getter-throws", `{"op":"then-getter-throws"}`, sandbox.Crashed, "then getter"},
			} {
				t.Run(c.name, func(t *testing.T) {
					r := call(c.message)
					got := r.Error
					if r.Outcome == sandbox.Noop {
						got = r.Output.Noop
					}
					if c.outcome != "" && (r.Outcome != c.outcome || !strings.Contains(got, c.detail)) {
						t.Errorf("outcome %s (%.300s), want %s with %q", r.Outcome, got, c.outcome, c.detail)
					}
					if r.Outcome != sandbox.Noop && r.Outcome != sandbox.Crashed && r.Outcome != sandbox.Error {
						t.Errorf("outcome %s (%.300s)", r.Outcome, got)
					}
					same(t)
				})
			}
		})
	}
}
