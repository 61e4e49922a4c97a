package sandbox

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// logRecorder is a sink that keeps its lines.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) sink(line string) {
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
}

func (r *logRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(limit LogLimit) (*LogLimiter, *logRecorder, *fakeClock) {
	rec := &logRecorder{}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := NewLogLimiter(limit, rec.sink)
	l.now = clock.now
	return l, rec, clock
}

func TestLogLimiterCutsLongLines(t *testing.T) {
	for _, c := range []struct {
		name    string
		line    string
		size    int // 0: len(line)
		want    string
		wantCut string
	}{
		{name: "short", line: "hello", want: "hello"},
		{name: "at-limit", line: strings.Repeat("a", 16), want: strings.Repeat("a", 16)},
		{name: "over", line: strings.Repeat("a", 20), want: strings.Repeat("a", 16), wantCut: " … [line cut: 4 more bytes]"},
		// é is two bytes: a cut inside it backs off to the character's start.
		{name: "utf8-boundary", line: strings.Repeat("a", 15) + "éé", want: strings.Repeat("a", 15), wantCut: " … [line cut: 4 more bytes]"},
		{name: "prefix-of-a-huge-line", line: strings.Repeat("b", 100), size: 200 << 20, want: strings.Repeat("b", 16), wantCut: fmt.Sprintf(" … [line cut: %d more bytes]", 200<<20-16)},
		{name: "short-prefix-of-a-long-line", line: "abc", size: 40, want: "abc", wantCut: " … [line cut: 37 more bytes]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, rec, _ := newTestLimiter(LogLimit{MaxLine: 16})
			if c.size == 0 {
				l.Log(c.line)
			} else {
				l.LogPrefix(c.line, c.size)
			}
			got := rec.got()
			if want := c.want + c.wantCut; len(got) != 1 || got[0] != want {
				t.Fatalf("logged %q, want [%q]", got, want)
			}
			if !utf8.ValidString(got[0]) {
				t.Errorf("logged invalid UTF-8 %q", got[0])
			}
		})
	}
}

func TestLogLimiterPerRun(t *testing.T) {
	l, rec, _ := newTestLimiter(LogLimit{PerRun: 1000})
	line := strings.Repeat("x", 100)
	run := l.Run(nil)
	for range 25 {
		run.Log(line)
	}
	if got := len(rec.got()); got != 10 {
		t.Fatalf("%d lines logged before the run's cap, want 10", got)
	}
	run.End()
	got := rec.got()
	if want := "… 15 lines (1500 bytes) dropped: guest log limit"; got[len(got)-1] != want {
		t.Errorf("last line %q, want %q", got[len(got)-1], want)
	}
	run.End() // a second End reports nothing again
	// A new run has a budget of its own; lines after End are the service's.
	run2 := l.Run(nil)
	run2.Log("second run")
	run.Log("late line of the first run")
	got = rec.got()
	if n := len(got); n != 13 || got[11] != "second run" || got[12] != "late line of the first run" {
		t.Errorf("after the first run: %q", got[11:])
	}
}

func TestLogLimiterRunSink(t *testing.T) {
	l, service, _ := newTestLimiter(LogLimit{PerRun: 10})
	own := &logRecorder{}
	run := l.Run(own.sink)
	run.Log("0123456789")
	run.Log("over")
	run.End()
	l.Log("service line")
	if got, want := own.got(), []string{"0123456789", "… 1 line (4 bytes) dropped: guest log limit"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("run sink got %q, want %q", got, want)
	}
	if got := service.got(); len(got) != 1 || got[0] != "service line" {
		t.Errorf("service sink got %q, want the service's line only", got)
	}
}

func TestLogLimiterLineRate(t *testing.T) {
	l, rec, clock := newTestLimiter(LogLimit{LinesPerSecond: 2, Burst: 5})
	for i := range 12 {
		l.Log(fmt.Sprint("line ", i))
	}
	if got := len(rec.got()); got != 5 {
		t.Fatalf("%d lines got through a burst of 5", got)
	}
	clock.advance(time.Second) // two tokens
	l.Log("after a second")
	l.Log("and another")
	l.Log("no token left")
	got := rec.got()[5:]
	want := []string{"… 7 lines (44 bytes) dropped: guest log limit", "after a second", "and another"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a second: %q, want %q", got, want)
	}
	l.Close()
	l.Log("after close")
	got = rec.got()[8:]
	if want := []string{"… 1 line (13 bytes) dropped: guest log limit"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Close reported %q, want %q (and nothing after Close)", got, want)
	}
	l.Close()
}

func TestLogLimiterPerServiceWindow(t *testing.T) {
	l, rec, clock := newTestLimiter(LogLimit{PerService: 1000, ServiceWindow: 100 * time.Second, LinesPerSecond: -1})
	line := strings.Repeat("y", 100)
	for range 3 {
		run := l.Run(nil)
		for range 5 {
			run.Log(line)
		}
		run.End()
	}
	// 10 lines fit the window's budget; the third run's five were dropped.
	logged := 0
	for _, s := range rec.got() {
		if s == line {
			logged++
		}
	}
	if logged != 10 {
		t.Errorf("%d lines logged over the service's budget, want 10", logged)
	}
	if got := rec.got(); got[len(got)-1] != "… 5 lines (500 bytes) dropped: guest log limit" {
		t.Errorf("last line %q, want the third run's drop marker", got[len(got)-1])
	}
	// The budget refills evenly: 10 s is 100 bytes, one line.
	clock.advance(10 * time.Second)
	l.Log(line)
	l.Log(line)
	if got := rec.got(); got[len(got)-1] != line || got[len(got)-2] == line {
		t.Errorf("after 10 s: %q, want exactly one more line", got[len(got)-2:])
	}
}

func TestLogLimiterReportsDuringAFlood(t *testing.T) {
	l, rec, clock := newTestLimiter(LogLimit{LinesPerSecond: 1e-9, Burst: 1})
	l.Log("first")
	for range 100 {
		l.Log("flood")
		clock.advance(time.Second)
	}
	// first, then one marker every 10 s while nothing gets through.
	got := rec.got()
	if len(got) != 10 {
		t.Fatalf("during 100 s of dropped lines: %q, want first and a marker every 10 s", got)
	}
	for _, s := range got[1:] {
		if s != "… 11 lines (55 bytes) dropped: guest log limit" {
			t.Errorf("marker %q, want 11 lines (55 bytes)", s)
		}
	}
}

func TestLogLimiterOff(t *testing.T) {
	l, rec, _ := newTestLimiter(LogLimit{PerRun: -1, PerService: -1, LinesPerSecond: -1})
	run := l.Run(nil)
	for range 5000 {
		run.Log(strings.Repeat("z", 1000))
	}
	run.End()
	if got := len(rec.got()); got != 5000 {
		t.Errorf("%d of 5000 lines logged with every limit off", got)
	}
}

// TestLogLimiterConcurrent floods one limiter from many goroutines (run it
// with -race): what reaches the sink stays within the caps, and every
// dropped line is counted in a marker.
func TestLogLimiterConcurrent(t *testing.T) {
	limit := LogLimit{PerRun: 20 << 10, PerService: 64 << 10, LinesPerSecond: 1e-9, Burst: 100_000}
	rec := &logRecorder{}
	l := NewLogLimiter(limit, rec.sink)
	line := strings.Repeat("c", 500)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			run := l.Run(nil)
			for range 1000 {
				run.Log(line)
				l.Log(line)
			}
			run.End()
		})
	}
	wg.Wait()
	l.Close()
	var logged, dropped int
	for _, s := range rec.got() {
		var n, b int
		var unit string
		if _, err := fmt.Sscanf(s, "… %d %s (%d bytes) dropped: guest log limit", &n, &unit, &b); err == nil {
			dropped += n
			continue
		}
		if s != line {
			t.Fatalf("unexpected line %.80q", s)
		}
		logged++
	}
	if logged*len(line) > 64<<10 {
		t.Errorf("%d bytes logged, over the service's cap of %d", logged*len(line), 64<<10)
	}
	if logged+dropped != 16000 {
		t.Errorf("%d logged + %d dropped, want 16000 lines accounted for", logged, dropped)
	}
}

func TestLogLimitValidate(t *testing.T) {
	for _, c := range []struct {
		name  string
		limit LogLimit
		ok    bool
	}{
		{"zero", LogLimit{}, true},
		{"defaults", DefaultLogLimit(), true},
		{"off", LogLimit{PerRun: -1, PerService: -1, LinesPerSecond: -1}, true},
		{"negative-burst", LogLimit{Burst: -1}, false},
		{"negative-window", LogLimit{ServiceWindow: -time.Second}, false},
		{"negative-max-line", LogLimit{MaxLine: -1}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.limit.Validate(); (err == nil) != c.ok {
				t.Errorf("Validate(%+v) = %v, want ok %v", c.limit, err, c.ok)
			}
		})
	}
	if got, want := NewLogLimiter(LogLimit{}, nil).Limit(), DefaultLogLimit(); got != want {
		t.Errorf("a zero LogLimit is %+v, want the defaults %+v", got, want)
	}
}

func TestRunLogContext(t *testing.T) {
	ctx := context.Background()
	if RunLogOf(ctx) != nil {
		t.Fatal("RunLogOf(Background) is not nil")
	}
	rec := &logRecorder{}
	RunLogOf(WithRunLog(ctx, rec.sink))("via ctx")
	if got := rec.got(); len(got) != 1 || got[0] != "via ctx" {
		t.Errorf("the sink from the context got %q", got)
	}
}

// TestLogLimiterRunFloodOneMarker: a run that floods past the line rate
// is reported by one marker, not one between every line the refill lets
// through, and logs again once the service's bucket has refilled.
func TestLogLimiterRunFloodOneMarker(t *testing.T) {
	l, rec, clock := newTestLimiter(LogLimit{LinesPerSecond: 100, Burst: 10, PerRun: -1, PerService: -1})
	run := l.Run(nil)
	for range 1000 {
		run.Log("flood")
		clock.advance(10 * time.Microsecond) // a token every 1000 lines
	}
	if got := rec.got(); len(got) != 10 {
		t.Fatalf("during a 10 ms flood: %d lines, want the burst of 10 and no marker yet: %q", len(got), got)
	}
	clock.advance(50 * time.Millisecond) // five tokens: half the burst
	run.Log("calm again")
	run.End()
	got := rec.got()[10:]
	want := []string{"… 990 lines (4950 bytes) dropped: guest log limit", "calm again"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the flood: %q, want %q", got, want)
	}
}
