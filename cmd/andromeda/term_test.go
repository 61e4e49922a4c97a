package main

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// termBuffer is a writer that says it is a terminal.
type termBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (t *termBuffer) Terminal() bool { return true }
func (t *termBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.Write(p)
}
func (t *termBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}

var escapes = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

// TestColors: at a terminal the tables colour their outcome, phase and
// health words, and with the colours taken out they are the plain tables
// byte for byte (the columns stay aligned); NO_COLOR, TERM=dumb and a
// pipe get no colour at all.
func TestColors(t *testing.T) {
	now := time.Now()
	runs := []api.Run{
		{ID: "r1", Service: "greeter", Version: "1.0.0", Start: now, Duration: time.Millisecond, Outcome: "ok"},
		{ID: "r2", Service: "a-much-longer-name", Version: "1.0.0", Start: now, Duration: time.Second, Outcome: "error", Error: "boom"},
		{ID: "r3", Service: "x", Version: "2.0.0", Start: now, Outcome: "skipped", Noop: "busy"},
	}
	services := []api.Service{
		{Name: "greeter", Version: "1.0.0", Phase: api.PhaseStarted, Status: "deployed", Health: &api.Health{Healthy: true}},
		{Name: "stopped-one", Version: "1.0.0", Phase: api.PhaseStopped, Status: "stopped"},
	}
	var plain, colored bytes.Buffer
	printRuns(&plain, runs)
	printServices(&plain, services)
	printRuns(colorWriter{&colored}, runs)
	printServices(colorWriter{&colored}, services)
	if !strings.Contains(colored.String(), "\x1b[32mok\x1b[0m") || !strings.Contains(colored.String(), "\x1b[31merror\x1b[0m") ||
		!strings.Contains(colored.String(), "\x1b[33mskipped\x1b[0m") || !strings.Contains(colored.String(), "\x1b[32mhealthy\x1b[0m") {
		t.Errorf("coloured tables:\n%q", colored.String())
	}
	if got := escapes.ReplaceAllString(colored.String(), ""); got != plain.String() {
		t.Errorf("coloured tables without their colours differ from the plain ones:\n%s\nwant:\n%s", got, plain.String())
	}

	for _, tc := range []struct {
		env  map[string]string
		term bool
		want bool
	}{
		{map[string]string{}, true, true},
		{map[string]string{"NO_COLOR": "1"}, true, false},
		{map[string]string{"TERM": "dumb"}, true, false},
		{map[string]string{}, false, false},
	} {
		var out interface {
			Write([]byte) (int, error)
		} = &bytes.Buffer{}
		if tc.term {
			out = &termBuffer{}
		}
		env := &cli{stdout: out, stderr: &bytes.Buffer{}, getenv: func(k string) string { return tc.env[k] }}
		env.withColor()
		if got := bool(paletteOf(env.stdout)); got != tc.want {
			t.Errorf("env %v, terminal %v: colours %v, want %v", tc.env, tc.term, got, tc.want)
		}
	}
}

// TestSpinnerAndBar: at a terminal the spinner shows what is waited for
// with the time, and clears its line when stopped; the upload bar shows
// the bytes sent. Elsewhere neither writes a byte.
func TestSpinnerAndBar(t *testing.T) {
	term := &termBuffer{}
	env := &cli{stdout: &bytes.Buffer{}, stderr: term, getenv: func(string) string { return "" }}
	stop := env.spinner("run r1 of greeter: running")
	time.Sleep(250 * time.Millisecond)
	stop()
	stop() // twice is fine
	out := term.String()
	if !strings.Contains(out, "run r1 of greeter: running 0.") || !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("spinner wrote %q", out)
	}
	bar := env.progressBar("uploading")
	bar(512, 2048)
	if !strings.Contains(term.String(), "uploading [") || !strings.Contains(term.String(), "512B / 2.0Ki") {
		t.Errorf("bar wrote %q", term.String())
	}
	var pipe bytes.Buffer
	env = &cli{stdout: &bytes.Buffer{}, stderr: &pipe, getenv: func(string) string { return "" }}
	env.spinner("x")()
	if env.progressBar("x") != nil || pipe.Len() != 0 {
		t.Errorf("not a terminal: wrote %q", pipe.String())
	}
}

// TestWideTables: -o wide lists more columns, nothing cut short, and
// stays aligned with colours taken out; --output refuses other formats.
func TestWideTables(t *testing.T) {
	long := strings.Repeat("why ", 40)
	runs := []api.Run{{ID: "r1", Service: "greeter", Version: "1.0.0", Node: "n2", Start: time.Now(), Outcome: "noop", Noop: long,
		Usage: api.Usage{CPUNS: int64(3 * time.Millisecond), PeakMemory: 2 << 20}}}
	var plain, colored bytes.Buffer
	printRunsWide(&plain, runs)
	printRunsWide(colorWriter{&colored}, runs)
	for _, want := range []string{"NODE", "CPU", "PEAK MEMORY", "n2", "3ms", "2Mi", strings.TrimSpace(long)} {
		if !strings.Contains(plain.String(), want) {
			t.Errorf("runs -o wide has no %q:\n%s", want, plain.String())
		}
	}
	if got := escapes.ReplaceAllString(colored.String(), ""); got != plain.String() {
		t.Errorf("wide runs without colours:\n%s\nwant:\n%s", got, plain.String())
	}
	svcs := []api.Service{{Name: "greeter", Version: "1.0.0", Node: "n1", Phase: api.PhaseStarted, Digest: "sha256:" + strings.Repeat("a", 64),
		Triggers: []api.TriggerInfo{{Spec: "every 1m", Next: time.Now().Add(time.Minute)}}}}
	plain.Reset()
	printServicesWide(&plain, svcs)
	for _, want := range []string{"NODE", "DECISION", "NEXT", "n1", "sha256:" + strings.Repeat("a", 64)} {
		if !strings.Contains(plain.String(), want) {
			t.Errorf("ls -o wide has no %q:\n%s", want, plain.String())
		}
	}
	cf := &clientFlags{output: "yaml"}
	if _, err := cf.wide(); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--output: must be table, wide or json") {
		t.Errorf("--output yaml = %v", err)
	}
	cf = &clientFlags{output: "json"}
	if w, err := cf.wide(); err != nil || w || !cf.json {
		t.Errorf("--output json = %v, %v, json %v", w, err, cf.json)
	}
}
