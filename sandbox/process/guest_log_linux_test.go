package process

import (
	"context"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// floodPython writes 100 MB of lines with print (the shim points standard
// output at standard error), one 100 MB line in 1 MiB writes on standard
// error, and 10 MB of protocol log messages, then answers; asked to be
// quiet, it answers at once.
const floodPython = `import sys

def handle(input, ctx):
    if input['message'].get('quiet'):
        return {'noop': 'quiet'}
    line = 'p' * 999
    for _ in range(100_000):
        print(line)
    chunk = 'q' * (1 << 20)
    for _ in range(100):
        sys.stderr.write(chunk)
    sys.stderr.write('\n')
    for _ in range(10_000):
        ctx.log('m' * 1000)
    return {'noop': 'flooded'}
`

// floodExec is a worker in shell: it answers init, then on its invocation
// writes 100 MB of lines to standard error and 100 MB without a newline to
// standard output, where the protocol is.
const floodExec = `#!/bin/sh
read -r init
printf '%s\n' '{"type":"ready","id":"init","protocol":1,"runtime":"sh","concurrency":1}'
read -r msg
case "$msg" in *'"type":"invoke"'*) ;; *) exit 0 ;; esac
yes "$(head -c 999 /dev/zero | tr '\0' e)" | head -c 100000000 >&2
head -c 100000000 /dev/zero | tr '\0' g
`

var dropMarker = regexp.MustCompile(`^… (\d+) lines? \((\d+) bytes\) dropped: guest log limit$`)

// logMeter is a Spec.Log that counts what reaches the node's log.
type logMeter struct {
	mu      sync.Mutex
	bytes   int
	lines   int
	dropped int64 // bytes the drop markers report
	markers []string
}

func (m *logMeter) log(line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bytes += len(line) + 1
	m.lines++
	if g := dropMarker.FindStringSubmatch(line); g != nil {
		n, _ := strconv.ParseInt(g[2], 10, 64)
		m.dropped += n
		m.markers = append(m.markers, line)
	}
}

// peakHeap samples the test process's heap until stop is closed and
// returns its highest HeapInuse.
func peakHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// TestGuestLogFlood has real workers write 200 MB to their standard
// output and error: what reaches Spec.Log (the node's log) stays under
// 1 MiB with markers counting what was dropped, the run ends with its
// outcome, and neither the node nor the worker holds the flood in memory.
func TestGuestLogFlood(t *testing.T) {
	requireSandbox(t)
	d := newDriver(t, testConfig())
	for _, c := range []struct {
		name, lang, entry, source string
		mode                      sandbox.Mode
		outcome                   sandbox.Outcome
		detail                    string
		dropped                   int64 // at least this many bytes reported dropped
	}{
		{name: "python-server", lang: LangPython, entry: "main.py", source: floodPython, mode: sandbox.ModeServer,
			outcome: sandbox.Noop, dropped: 190e6},
		{name: "exec-command", lang: LangExec, entry: "flood", source: floodExec, mode: sandbox.ModeCommand,
			outcome: sandbox.Crashed, detail: "protocol error: a line longer than max_line", dropped: 95e6},
	} {
		t.Run(c.name, func(t *testing.T) {
			requireLang(t, c.lang)
			dir := filepath.Join(t.TempDir(), "svc")
			if err := writeService(dir, map[string]string{c.entry: c.source}); err != nil {
				t.Fatal(err)
			}
			meter := &logMeter{}
			spec := sandbox.Spec{Service: "flood-" + c.name, Dir: dir, Entry: c.entry, Language: c.lang, Mode: c.mode,
				Limits: sandbox.Limits{Concurrency: 1, Memory: 128 << 20, Timeout: time.Minute}, Log: meter.log}
			dep := deploy(t, d, spec)

			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base := ms.HeapInuse
			stop := make(chan struct{})
			peak := peakHeap(stop)
			in := `{"run_id":"r-flood","service":"s","trigger":{"kind":"manual"},"message":{},"state":{},"config":{}}`
			start := time.Now()
			r, err := sandbox.CallRaw(context.Background(), dep, []byte(in), time.Minute)
			close(stop)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("the flood took %v; outcome %s", time.Since(start), r.Outcome)
			if r.Outcome != c.outcome || !strings.Contains(r.Error, c.detail) {
				t.Fatalf("outcome %s (%.300s), want %s with %q", r.Outcome, r.Error, c.outcome, c.detail)
			}
			if grew := int64(<-peak) - int64(base); grew > 64<<20 {
				t.Errorf("the node's heap grew by %d MiB during the flood", grew>>20)
			}
			if c.mode == sandbox.ModeServer {
				// The worker lives on and answers.
				quiet := strings.Replace(in, `"message":{}`, `"message":{"quiet":true}`, 1)
				r, err := sandbox.CallRaw(context.Background(), dep, []byte(quiet), time.Minute)
				if err != nil || r.Outcome != sandbox.Noop {
					t.Errorf("after the flood: %s %v (%.200s)", r.Outcome, err, r.Error)
				}
				if n := WorkersStarted(dep); n != 1 {
					t.Errorf("%d workers started, want 1: the flood killed the worker", n)
				}
			}
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := dep.Stop(stopCtx); err != nil {
				t.Fatal(err)
			}

			meter.mu.Lock()
			defer meter.mu.Unlock()
			t.Logf("Spec.Log got %d lines, %d bytes; markers %q", meter.lines, meter.bytes, meter.markers)
			if meter.bytes > 1<<20 {
				t.Errorf("Spec.Log got %d bytes, want at most 1 MiB", meter.bytes)
			}
			if len(meter.markers) == 0 {
				t.Fatal("no drop marker reached Spec.Log")
			}
			if meter.dropped < c.dropped {
				t.Errorf("the drop markers account for %d bytes, want at least %d", meter.dropped, c.dropped)
			}
		})
	}
}
