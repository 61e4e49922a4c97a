package process

import (
	"encoding/json"
	"reflect"
	"testing"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

// FuzzHandle feeds the driver what a worker writes on its stdout — guest
// output, so untrusted. handle must never panic, and a line its fast path
// takes must deliver exactly what a full decode of the line says.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		`{"type":"result","id":"1","output":{"noop":"x"}}`,
		`{"type":"result","id":"1","output":{"noop":"x"},"extra":1}`,
		`{"type":"result","id":"1\"","output":{}}`,
		`{"type":"error","id":"1","error":{"message":"boom","stack":"at x"}}`,
		`{"type":"ready","id":"0","protocol":1,"concurrency":4}`,
		`{"type":"log","id":"1","level":"warn","text":"a\nb"}`,
		`{"type":"result","id":"1","output":}`,
		`{"type":"error","id":"1"}`,
		`not json`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		w := &workerProc{service: "fuzz", calls: map[string]*call{}, capacity: 4, ready: true,
			readyCh: make(chan struct{}), done: make(chan struct{})}
		c := &call{id: "1", reply: make(chan reply, 1)}
		w.calls["1"] = c
		w.inflight = 1
		err := w.handle(line)

		var m worker.Message
		full := json.Unmarshal(line, &m)
		select {
		case r := <-c.reply:
			if full != nil {
				t.Fatalf("delivered a reply for a line a full decode rejects (%v): %q", full, line)
			}
			if m.ID != "1" {
				t.Fatalf("delivered to call 1 a reply for id %q: %q", m.ID, line)
			}
			if r.err == nil && m.Type == worker.TypeResult && (len(r.output) > 0 || len(m.Output) > 0) && !sameJSON(r.output, m.Output) {
				t.Fatalf("fast path output %q, full decode %q, line %q", r.output, m.Output, line)
			}
		default:
			if err == nil && full == nil && m.ID == "1" && (m.Type == worker.TypeResult || m.Type == worker.TypeError) {
				t.Fatalf("a %s for call 1 was not delivered: %q", m.Type, line)
			}
		}
	})
}

// sameJSON compares two JSON texts as decoded values.
func sameJSON(a, b []byte) bool {
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}
