package browser

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/andromeda-runner/andromeda/runtimes/node"
	"github.com/andromeda-runner/andromeda/runtimes/python"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// shimWorker is a language shim's worker run straight from the test
// (no sandbox: the shim does not need one), spoken to with the runtime
// protocol, one invocation at a time. It stands for a Node.js or Python
// worker of the node's process driver.
type shimWorker struct {
	mu   sync.Mutex
	in   io.WriteCloser
	out  *bufio.Reader
	next int
}

// startShim starts a worker of lang ("node" or "python") running code as
// its one module, and waits for its ready; it skips t without the
// language's interpreter (fails it in strict CI). The worker ends with t.
func startShim(t testing.TB, lang, code string) *shimWorker {
	t.Helper()
	dir := t.TempDir()
	var shim []byte
	var exe, entry string
	var args []string
	switch lang {
	case "node":
		shim, exe, entry = node.Shim, cmp.Or(os.Getenv("ANDROMEDA_TEST_NODE"), "node"), "index.js"
	case "python":
		shim, exe, entry = python.Shim, cmp.Or(os.Getenv("ANDROMEDA_TEST_PYTHON"), "python3"), "main.py"
		args = []string{"-I", "-S", "-B", "-X", "utf8"}
	default:
		t.Fatalf("no shim for %s", lang)
	}
	path, err := exec.LookPath(exe)
	sandboxtest.Require(t, err == nil, exe+" is not on PATH (ANDROMEDA_TEST_NODE and ANDROMEDA_TEST_PYTHON name others)")
	file := map[string]string{"node": node.File, "python": python.File}[lang]
	for name, b := range map[string][]byte{file: shim, entry: []byte(code)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(path, append(args, filepath.Join(dir, file))...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	w := &shimWorker{in: in, out: bufio.NewReaderSize(out, 1<<20)}
	init := fmt.Sprintf(`{"type":"init","id":"init","protocol":1,"max_protocol":2,"service":"s","modules":[{"id":"main","entry":%q}],"config":{},"max_line":8388608,"max_in_flight":1}`,
		filepath.Join(dir, entry))
	if m := w.roundTrip(t, init); m.Type != "ready" {
		t.Fatalf("%s shim: %+v, want ready", lang, m)
	}
	return w
}

// shimAnswer is a worker's answer to a message.
type shimAnswer struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Output json.RawMessage `json:"output"`
	Error  *wireError      `json:"error"`
}

func (w *shimWorker) roundTrip(t testing.TB, line string) shimAnswer {
	t.Helper()
	if _, err := io.WriteString(w.in, line+"\n"); err != nil {
		t.Fatalf("write to the shim: %v", err)
	}
	for {
		b, err := w.out.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read from the shim: %v", err)
		}
		var a shimAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("the shim sent %q: %v", b, err)
		}
		if a.Type == "ready" || a.Type == "result" || a.Type == "error" {
			return a
		}
	}
}

// invoke runs the worker's module on input: its output, or its error.
// Safe for concurrent use (one invocation at a time).
func (w *shimWorker) invoke(t testing.TB, input []byte) ([]byte, *wireError) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	a := w.roundTrip(t, `{"type":"invoke","id":"`+strconv.Itoa(w.next)+`","input":`+string(input)+`}`)
	if a.Type == "error" {
		return nil, a.Error
	}
	return a.Output, nil
}
