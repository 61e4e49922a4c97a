package python_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/runtimes/python"
)

// asyncService answers an invoke with the length of its message and, when
// the message asks, sleeps first (so that a shutdown finds it running).
const asyncService = `import asyncio
import json


async def handle(input):
    m = input['message']
    if isinstance(m, dict) and m.get('sleep'):
        await asyncio.sleep(m['sleep'])
    return {'noop': 'len %d' % len(json.dumps(m, separators=(',', ':')))}
`

// shimProc is the shim run as a plain child (no sandbox): its protocol
// pipes, for tests of the shim's own reading and writing.
type shimProc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *bytes.Buffer
}

func startShim(t *testing.T, source string) *shimProc {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("ANDROMEDA_CI_STRICT") == "1" {
			t.Fatal("python3 is not installed")
		}
		t.Skip("python3 is not installed")
	}
	dir := t.TempDir()
	shim, entry := filepath.Join(dir, python.File), filepath.Join(dir, "main.py")
	if err := os.WriteFile(shim, python.Shim, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entry, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &shimProc{cmd: exec.Command(py, "-I", "-S", "-B", shim), stderr: &bytes.Buffer{}}
	p.cmd.Stderr = p.stderr
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReaderSize(stdout, 1<<20)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	p.write(t, fmt.Sprintf(`{"type":"init","id":"i","protocol":1,"max_protocol":2,"modules":[{"id":"main","entry":%q}]}`+"\n", entry))
	if m := p.read(t); m["type"] != "ready" || m["concurrency"] != float64(64) {
		t.Fatalf("init answered %v, want ready with concurrency 64 (an async service)", m)
	}
	return p
}

func (p *shimProc) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(p.in, s); err != nil {
		t.Fatal(err)
	}
}

func (p *shimProc) read(t *testing.T) map[string]any {
	t.Helper()
	type answer struct {
		m   map[string]any
		err error
	}
	c := make(chan answer, 1)
	go func() {
		line, err := p.out.ReadBytes('\n')
		var m map[string]any
		if err == nil {
			err = json.Unmarshal(line, &m)
		}
		c <- answer{m, err}
	}()
	select {
	case a := <-c:
		if a.err != nil {
			t.Fatalf("read the shim's answer: %v (stderr: %s)", a.err, p.stderr)
		}
		return a.m
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer from the shim in 10 s (stderr: %s)", p.stderr)
		return nil
	}
}

func invoke(id, message string) string {
	return fmt.Sprintf(`{"type":"invoke","id":%q,"input":{"run_id":%q,"message":%s}}`+"\n", id, id, message)
}

// noop is the answer's output.noop for the invoke id, failing on another.
func noop(t *testing.T, m map[string]any, id string) string {
	t.Helper()
	out, _ := m["output"].(map[string]any)
	if m["type"] != "result" || m["id"] != id || out == nil {
		t.Fatalf("answer %v, want the result of %s", m, id)
	}
	s, _ := out["noop"].(string)
	return s
}

// TestAsyncLines feeds an async service's shim lines cut anywhere: a line
// in pieces written apart, several lines in one write, a line of
// megabytes, and a shutdown while an invocation sleeps: every invoke is
// answered once, the shutdown waits for the one in flight, and a last line
// without its newline ends the worker with the reason on stderr.
func TestAsyncLines(t *testing.T) {
	p := startShim(t, asyncService)

	// One line in three writes, apart.
	line := invoke("a", `{"x":"split"}`)
	for _, piece := range []string{line[:10], line[10:30], line[30:]} {
		p.write(t, piece)
		time.Sleep(20 * time.Millisecond)
	}
	if got := noop(t, p.read(t), "a"); got != "len 13" {
		t.Errorf("a: %q, want len 13", got)
	}

	// Three lines in one write, the third cut and finished in the next.
	three := invoke("b", `1`) + invoke("c", `22`) + invoke("d", `333`)
	p.write(t, three[:len(three)-5])
	time.Sleep(20 * time.Millisecond)
	p.write(t, three[len(three)-5:])
	want := map[string]string{"b": "len 1", "c": "len 2", "d": "len 3"}
	for range 3 {
		m := p.read(t)
		id, _ := m["id"].(string)
		if got := noop(t, m, id); got != want[id] {
			t.Errorf("%s: %q, want %q", id, got, want[id])
		}
		delete(want, id)
	}

	// A line of 3 MiB: many reads of the pipe.
	big := `"` + strings.Repeat("y", 3<<20) + `"`
	p.write(t, invoke("e", big))
	if got, want := noop(t, p.read(t), "e"), fmt.Sprintf("len %d", len(big)); got != want {
		t.Errorf("e: %q, want %q", got, want)
	}

	// A shutdown while f sleeps: f is answered, then the worker exits 0.
	p.write(t, invoke("f", `{"sleep":0.2}`)+`{"type":"shutdown","by":`+fmt.Sprint(time.Now().Add(5*time.Second).UnixMilli())+"}\n")
	if got := noop(t, p.read(t), "f"); got != "len 13" {
		t.Errorf("f: %q, want len 13", got)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("the worker ended %v after its shutdown, want exit 0 (stderr: %s)", err, p.stderr)
	}

	// A last line without its newline.
	q := startShim(t, asyncService)
	q.write(t, invoke("g", `1`)+`{"type":"invoke"`)
	if got := noop(t, q.read(t), "g"); got != "len 1" {
		t.Errorf("g: %q, want len 1", got)
	}
	q.in.Close()
	if err := q.cmd.Wait(); err == nil || !strings.Contains(q.stderr.String(), "a last line without a newline") {
		t.Errorf("the worker ended %v with stderr %q, want exit 1 naming the last line", err, q.stderr)
	}
}
