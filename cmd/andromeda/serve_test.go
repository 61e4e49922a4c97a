package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// readyBuffer is what serve prints; ready is closed once it has printed
// its banner (its last line starts "Try: ").
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
	if bytes.Contains(r.b.Bytes(), []byte("\nTry: ")) {
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
		// The last line says how the stop went.
		if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); !strings.HasPrefix(lines[len(lines)-1], "stopped in ") {
			t.Errorf("serve %q ended without its summary line:\n%s", args, out.String())
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
	// The first line says it starts; the banner with the address comes
	// last, after the services' lines.
	if !strings.HasPrefix(out, "andromeda ") || !strings.Contains(strings.SplitN(out, "\n", 2)[0], "starting node") {
		t.Errorf("the first line does not say the node starts:\n%s", out)
	}
	if i, j := strings.Index(out, "listening on"), strings.Index(out, "services: echo "); i < 0 || j < 0 || i < j {
		t.Errorf("the node's address is not after the services' lines:\n%s", out)
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

// TestTextLogShort: text logs (a terminal's) shorten digests and times;
// JSON logs keep them whole.
func TestTextLogShort(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	var text, js bytes.Buffer
	newLogger(&text, node.LogConfig{Format: "text"}).Info("service admitted", "digest", digest)
	newLogger(&js, node.LogConfig{Format: "json"}).Info("service admitted", "digest", digest)
	// The short time is the clock alone (15:04:05.000), not the date: a
	// check for "time=20" (a year) failed from 20:00 to 20:59.
	short := regexp.MustCompile(`^time=\d\d:\d\d:\d\d\.\d{3} `)
	if got := text.String(); strings.Contains(got, digest) || !strings.Contains(got, "digest=sha256:abababababab\n") || !short.MatchString(got) {
		t.Errorf("text log line = %q; want the digest and the time short", got)
	}
	if !strings.Contains(js.String(), digest) {
		t.Errorf("JSON log line = %q; want the whole digest", js.String())
	}
}

// TestTryHint: a node on the default address and data dir is tried with
// a bare command; another names the context to add.
func TestTryHint(t *testing.T) {
	def := node.DefaultConfig()
	def.Data, _ = filepath.Abs(def.Data)
	if got := tryHint(def, def.Listen); got != "andromeda ls" {
		t.Errorf("default node: %q", got)
	}
	other := def
	other.Name, other.Listen, other.Data = "dev", "127.0.0.1:7171", "/srv/dev"
	if got := tryHint(other, "127.0.0.1:7171"); got != "andromeda context add dev --node 127.0.0.1:7171 --data /srv/dev --use && andromeda ls" {
		t.Errorf("other node: %q", got)
	}
}

// TestServeDemoColdCache: serve --demo on a machine whose Go build cache
// is empty (the toolchain compiles the runtime for wasip1 first) says at
// once that it starts, shows each build with its time, and is ready with
// every demo service deployed within 30 s of its start (90 s in CI, where
// the other packages' tests share the two cores; the time is logged).
func TestServeDemoColdCache(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the demo services")
	t.Setenv("GOCACHE", t.TempDir())
	dir := t.TempDir()
	cfg := filepath.Join(dir, "andromeda.yaml")
	os.WriteFile(cfg, []byte("docker: {enabled: false}\ncache: "+filepath.Join(dir, "cache")+"\n"), 0o644)
	out := &readyBuffer{ready: make(chan struct{})}
	e := &cli{stdout: out, stderr: io.Discard, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- e.run(ctx, []string{"serve", "--demo", "--config", cfg, "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0"})
	}()
	bound := 30 * time.Second
	if os.Getenv("CI") != "" {
		bound = 90 * time.Second
	}
	var first time.Duration
	for first == 0 {
		if out.String() != "" {
			first = time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-out.ready:
	case err := <-done:
		t.Fatalf("serve returned before it was ready: %v\n%s", err, out.String())
	case <-time.After(5 * time.Minute):
		t.Fatalf("serve --demo not ready after 5 minutes:\n%s", out.String())
	}
	ready := time.Since(start)
	// andromeda ls, right after ready, lists the demo services.
	var addr string
	for line := range strings.Lines(out.String()) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on"); ok {
			addr, _, _ = strings.Cut(strings.TrimSpace(rest), " ")
		}
	}
	ls, _, err := runCLI(t, map[string]string{"ANDROMEDA_ADDR": addr, "ANDROMEDA_DATA": filepath.Join(dir, "data")}, "ls")
	for _, name := range []string{"greeter", "heartbeat", "price-watch"} {
		if err != nil || !strings.Contains(ls, name+" ") {
			t.Errorf("andromeda ls right after ready = %v, %v; want %s listed", ls, err, name)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("cold Go cache: first line after %s, ready with the demo after %s", first, ready)
	text := out.String()
	if first > 2*time.Second {
		t.Errorf("the first line came after %s, want within 2s", first)
	}
	if ready > bound {
		t.Errorf("ready with the demo after %s, want within %s:\n%s", ready, bound, text)
	}
	for _, want := range []string{"demo: [1/3] building greeter", "demo: [3/3] building price-watch", "… done in ", "demo: greeter ", "demo: heartbeat ", "demo: price-watch "} {
		if !strings.Contains(text, want) {
			t.Errorf("serve --demo printed no %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "already built") {
		t.Errorf("the demo was found built: the cache was not cold:\n%s", text)
	}
}

// TestDemoProgress: what /readyz says while serve --demo prepares the
// demo follows its progress lines: each guest built, then each deploy;
// a cached build goes straight to the deploys. The lines pass through.
func TestDemoProgress(t *testing.T) {
	for name, tc := range map[string]struct {
		writes []string
		want   []string
	}{
		"built": {
			writes: []string{"demo: [1/2] building greeter (Go → wasip1 reactor)… ", "done in 1.2s\n", "demo: [2/2] building heartbeat (Go → wasip1 command)… ", "done in 0.9s\n",
				"demo: greeter       1.0.0    0123456789ab  started\n", "demo: heartbeat     1.0.0    0123456789ab  started\n"},
			want: []string{"building demo services (1/2): greeter", "building demo services (2/2): heartbeat", "deploying demo services (0/2)", "deploying demo services (1/2)", "deploying demo services (2/2)"},
		},
		"cached": {
			writes: []string{"demo: 3 services already built (cache c)\n", "demo: greeter       1.0.0    0123456789ab  started\n"},
			want:   []string{"deploying demo services (0/3)", "deploying demo services (1/3)"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			var said []string
			var out strings.Builder
			p := &demoProgress{w: &out, say: func(s string) { said = append(said, s) }}
			for _, w := range tc.writes {
				fmt.Fprint(p, w)
			}
			if !slices.Equal(said, tc.want) {
				t.Errorf("said %q, want %q", said, tc.want)
			}
			if out.String() != strings.Join(tc.writes, "") {
				t.Errorf("passed through %q", out.String())
			}
		})
	}
}
