package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// readyBuffer is what serve prints; ready is closed once it has printed
// its "ready." line.
type readyBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

func (r *readyBuffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := r.b.Write(p)
	if bytes.Contains(r.b.Bytes(), []byte("\nready. ")) {
		r.once.Do(func() { close(r.ready) })
	}
	return n, err
}

func (r *readyBuffer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.b.String()
}

// serveUntilReady runs `andromeda serve ARGS` until it says it is ready
// (or returns), stops it and returns what it printed on stdout.
func serveUntilReady(t *testing.T, args ...string) string {
	t.Helper()
	out := &readyBuffer{ready: make(chan struct{})}
	var errb readyBuffer
	e := &cli{stdout: out, stderr: &errb, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.run(ctx, append([]string{"serve"}, args...)) }()
	select {
	case <-out.ready:
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve %q stopped with %v\n%s", args, err, out.String())
		}
	case err := <-done:
		t.Fatalf("serve %q returned before it was ready: %v\n%s\n%s", args, err, out.String(), errb.String())
	}
	return out.String()
}

// TestServeServices: serve prints a line for each entry of the config's
// services list — deployed, refused with its reason, failed with its
// path — and a second start finds the admitted one already deployed.
func TestServeServices(t *testing.T) {
	dir := t.TempDir()
	os.CopyFS(filepath.Join(dir, "svc", "echo"), os.DirFS(echoService(t)))
	cfg := filepath.Join(dir, "andromeda.yaml")
	os.WriteFile(cfg, []byte(`docker: {enabled: false}   # its self-test starts a container at every start
policy:
  rules:
    - {name: no-echo-two, expr: 'service.name != "echo-two"', message: echo-two is not run here}
services:
  - {dir: svc/echo}
  - {dir: svc/echo-two}
  - {archive: missing.tar.gz}
`), 0o644)
	os.CopyFS(filepath.Join(dir, "svc", "echo-two"), os.DirFS(echoService(t)))
	m := filepath.Join(dir, "svc", "echo-two", "andromeda.yaml")
	b, _ := os.ReadFile(m)
	os.WriteFile(m, bytes.Replace(b, []byte("name: echo\n"), []byte("name: echo-two\n"), 1), 0o644)
	data := t.TempDir()
	args := []string{"--config", cfg, "--data", data, "--listen", "127.0.0.1:0"}

	out := serveUntilReady(t, args...)
	for _, want := range []string{
		"services: echo          1.0.0    ",
		"  deployed\n",
		"services: echo-two      1.0.0    ",
		"refused (services[1] dir " + filepath.Join(dir, "svc", "echo-two") + ")\n",
		"              rules.no-echo-two: echo-two is not run here\n",
		"services: services[2]",
		"failed (services[2] archive " + filepath.Join(dir, "missing.tar.gz") + ")\n",
		"services[2].archive: open " + filepath.Join(dir, "missing.tar.gz") + ": no such file or directory",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("serve printed no %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "listening on"), strings.Index(out, "services: echo "); i < 0 || j < i {
		t.Errorf("the services' lines are not after the node's address:\n%s", out)
	}
	out = serveUntilReady(t, args...)
	if !strings.Contains(out, "services: echo ") || !strings.Contains(out, "already deployed\n") {
		t.Errorf("second start printed:\n%s", out)
	}
}

// TestServeDemo: serve --demo builds the examples and submits them as a
// services list; a second start builds nothing and finds them deployed.
func TestServeDemo(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the demo services")
	data := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "andromeda.yaml")
	os.WriteFile(cfg, []byte("docker: {enabled: false}\n"), 0o644) // its self-test starts a container at every start
	args := []string{"--demo", "--config", cfg, "--data", data, "--listen", "127.0.0.1:0"}
	out := serveUntilReady(t, args...)
	for _, want := range []string{"demo: [1/3] building", "demo: greeter       1.0.0    ", "demo: price-watch   1.0.0    "} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --demo printed no %q:\n%s", want, out)
		}
	}
	// The wasm ones run everywhere; the others (process driver) are
	// deployed or failed with the reason, never fatal.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "demo: greeter") || strings.HasPrefix(line, "demo: price-watch") || strings.HasPrefix(line, "demo: heartbeat") {
			if !strings.HasSuffix(line, "  deployed") {
				t.Errorf("wasm demo not deployed: %q", line)
			}
		}
	}
	out = serveUntilReady(t, args...)
	if !strings.Contains(out, "already built") || strings.Contains(out, "building") || !strings.Contains(out, "demo: greeter       1.0.0    ") || strings.Count(out, "already deployed") < 3 {
		t.Errorf("second serve --demo printed:\n%s", out)
	}
}
