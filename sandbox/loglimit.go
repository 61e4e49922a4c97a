package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unicode/utf8"
)

// The defaults of LogLimit.
const (
	DefaultLogPerRun         = 256 << 10 // bytes one run may log
	DefaultLogPerService     = 8 << 20   // bytes one service may log per DefaultLogServiceWindow
	DefaultLogServiceWindow  = time.Hour
	DefaultLogLinesPerSecond = 100
	DefaultLogBurst          = 1000
	DefaultLogMaxLine        = 4 << 10
)

// logReportEvery is how often, at most, a scope whose lines keep being
// dropped reports them while no line of it gets through.
const logReportEvery = 10 * time.Second

// LogLimit bounds what a guest writes to the node's log, so that a service
// that floods its standard error cannot fill the node's disk. Zero fields
// take their defaults; a negative PerRun, PerService or LinesPerSecond turns
// that limit off.
type LogLimit struct {
	// PerRun is the most bytes of lines one run (invocation) may log.
	// Default DefaultLogPerRun (256 KiB).
	PerRun int64 `json:"per_run"`
	// PerService is the most bytes of lines one service may log in any
	// ServiceWindow, its runs' lines included: a budget that refills
	// evenly over the window. Default DefaultLogPerService (8 MiB).
	PerService int64 `json:"per_service"`
	// ServiceWindow is the window of PerService. Default one hour.
	ServiceWindow time.Duration `json:"service_window"`
	// LinesPerSecond and Burst are a token bucket on the lines of one
	// service: Burst lines at once, then LinesPerSecond. Defaults 100 lines
	// per second, a burst of 1000.
	LinesPerSecond float64 `json:"lines_per_second"`
	Burst          int     `json:"burst"`
	// MaxLine is the longest line logged: a longer one is cut to MaxLine
	// bytes (at a character boundary) and marked with how much was cut.
	// Default DefaultLogMaxLine (4 KiB).
	MaxLine int `json:"max_line"`
}

// DefaultLogLimit returns the limits of a zero LogLimit, spelled out.
func DefaultLogLimit() LogLimit {
	return LogLimit{
		PerRun:         DefaultLogPerRun,
		PerService:     DefaultLogPerService,
		ServiceWindow:  DefaultLogServiceWindow,
		LinesPerSecond: DefaultLogLinesPerSecond,
		Burst:          DefaultLogBurst,
		MaxLine:        DefaultLogMaxLine,
	}
}

// Validate reports the fields that no limit can mean.
func (l LogLimit) Validate() error {
	var errs []error
	if l.ServiceWindow < 0 {
		errs = append(errs, fmt.Errorf("service_window: must not be negative, got %v", l.ServiceWindow))
	}
	if l.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst: must not be negative, got %d", l.Burst))
	}
	if l.MaxLine < 0 {
		errs = append(errs, fmt.Errorf("max_line: must not be negative, got %d", l.MaxLine))
	}
	if math.IsNaN(l.LinesPerSecond) || math.IsInf(l.LinesPerSecond, 0) {
		errs = append(errs, fmt.Errorf("lines_per_second: must be a number, got %v", l.LinesPerSecond))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields.
func (l LogLimit) withDefaults() LogLimit {
	d := DefaultLogLimit()
	if l.PerRun == 0 {
		l.PerRun = d.PerRun
	}
	if l.PerService == 0 {
		l.PerService = d.PerService
	}
	if l.ServiceWindow <= 0 {
		l.ServiceWindow = d.ServiceWindow
	}
	if l.LinesPerSecond == 0 || math.IsNaN(l.LinesPerSecond) {
		l.LinesPerSecond = d.LinesPerSecond
	}
	if l.Burst <= 0 {
		l.Burst = d.Burst
	}
	if l.MaxLine <= 0 {
		l.MaxLine = d.MaxLine
	}
	return l
}

// A LogLimiter applies a LogLimit to the lines of one service on their way
// to a sink (the node's log). Lines over a limit are dropped and counted;
// the count is reported in one marker line,
//
//	… 1234 lines (5678901 bytes) dropped: guest log limit
//
// written to the same sink before the next line that gets through, when
// the run ends, at Close, and at most every 10 s while lines keep being
// dropped. A run that dropped lines logs again only once the service's
// buckets hold half their line burst and an eighth of their byte budget,
// so that a flood is reported by one marker. Markers and the cut marks of long lines are not counted against
// the limits. Safe for concurrent use; the sinks are called without the
// limiter's lock held, from the goroutine that logs, and must not block.
type LogLimiter struct {
	limit LogLimit
	sink  func(string)
	now   func() time.Time // time.Now; tests set it

	mu      sync.Mutex
	bytes   bucket // the service's bytes
	lines   bucket // the service's lines
	own     drops  // lines not tied to a run, dropped and not yet reported
	closed  bool
	started bool // the buckets are initialised
}

// NewLogLimiter returns a limiter of limit (zero fields take their
// defaults) in front of sink, which receives the lines of the service not
// tied to a run and, unless a run has its own, those of its runs. A nil
// sink drops every line. Close it when the service stops.
func NewLogLimiter(limit LogLimit, sink func(line string)) *LogLimiter {
	return &LogLimiter{limit: limit.withDefaults(), sink: sink, now: time.Now}
}

// Limit returns the limits in force, defaults filled in.
func (l *LogLimiter) Limit() LogLimit { return l.limit }

// Log logs one line of the service (without its newline) that no run
// wrote, or whose run is not known.
func (l *LogLimiter) Log(line string) { l.write(nil, line, len(line)) }

// LogPrefix is Log for a line of which the caller kept only the first
// bytes, prefix, of size (a reader with a bounded buffer that discarded
// the rest): the line is cut as if it had been read whole.
func (l *LogLimiter) LogPrefix(prefix string, size int) { l.write(nil, prefix, size) }

// Run starts the log of one run: its lines count against PerRun as well
// as the service's limits, and go to sink (nil: the limiter's sink). End
// it when the run ends.
func (l *LogLimiter) Run(sink func(line string)) *RunLog {
	if sink == nil {
		sink = l.sink
	}
	return &RunLog{l: l, sink: sink}
}

// Close reports what was dropped and not yet reported; lines logged after
// Close are dropped without a count. Safe to call more than once.
func (l *LogLimiter) Close() {
	l.mu.Lock()
	marker := l.own.take()
	l.closed = true
	l.mu.Unlock()
	if marker != "" && l.sink != nil {
		l.sink(marker)
	}
}

// RunLog is the log of one run, from LogLimiter.Run. Safe for concurrent
// use.
type RunLog struct {
	l     *LogLimiter
	sink  func(string)
	used  int64 // bytes logged, under l.mu
	drops drops // under l.mu
	ended bool  // under l.mu
}

// Log logs one line of the run (without its newline). After End, a line
// is logged as the service's.
func (r *RunLog) Log(line string) { r.l.write(r, line, len(line)) }

// LogPrefix is Log for a line of which the caller kept only the first
// bytes, prefix, of size.
func (r *RunLog) LogPrefix(prefix string, size int) { r.l.write(r, prefix, size) }

// End ends the run: what it dropped and did not yet report is reported.
// Later calls do nothing.
func (r *RunLog) End() {
	r.l.mu.Lock()
	marker := ""
	if !r.ended {
		r.ended = true
		marker = r.drops.take()
	}
	r.l.mu.Unlock()
	if marker != "" && r.sink != nil {
		r.sink(marker)
	}
}

// write logs line, whose full size is size (more than len(line) when a
// reader kept only its start), for run r (nil: the service itself).
func (l *LogLimiter) write(r *RunLog, line string, size int) {
	line, cut := l.cutLine(line, size)
	cost := int64(len(line))
	now := l.now()

	l.mu.Lock()
	if r != nil && r.ended {
		r = nil
	}
	if l.closed {
		l.mu.Unlock()
		return
	}
	if !l.started {
		l.started = true
		lim := l.limit
		l.bytes = bucket{tokens: float64(lim.PerService), max: float64(lim.PerService), rate: float64(lim.PerService) / lim.ServiceWindow.Seconds(), last: now, off: lim.PerService < 0}
		l.lines = bucket{tokens: float64(lim.Burst), max: float64(lim.Burst), rate: lim.LinesPerSecond, last: now, off: lim.LinesPerSecond < 0}
	}
	sink, d := l.sink, &l.own
	runOK := true
	if r != nil {
		sink, d = r.sink, &r.drops
		runOK = l.limit.PerRun < 0 || r.used+cost <= l.limit.PerRun
	}
	ok := runOK && l.bytes.has(now, float64(cost)) && l.lines.has(now, 1)
	if ok && r != nil && r.drops.lines > 0 {
		// A run that is dropping logs again only once the service's
		// buckets have refilled well (half its line burst, an eighth of
		// its byte budget): a flood leaves one marker, not one between
		// every line the refill lets through.
		ok = l.lines.has(now, max(1, l.lines.max/2)) && l.bytes.has(now, max(float64(cost), l.bytes.max/8))
	}
	var marker string
	if ok {
		l.bytes.take(float64(cost))
		l.lines.take(1)
		if r != nil {
			r.used += cost
		}
		marker = d.take()
	} else {
		d.add(size)
		if d.since.IsZero() {
			d.since = now
		}
		if now.Sub(d.since) >= logReportEvery {
			marker = d.take()
		}
	}
	l.mu.Unlock()

	if sink == nil {
		return
	}
	if marker != "" {
		sink(marker)
	}
	if ok {
		sink(line + cut)
	}
}

// cutLine returns line cut to MaxLine bytes and, when cut (or when the
// caller kept less than size bytes), the mark to append.
func (l *LogLimiter) cutLine(line string, size int) (string, string) {
	size = max(size, len(line))
	if size <= l.limit.MaxLine {
		return line, ""
	}
	n := min(len(line), l.limit.MaxLine)
	for n > 0 && n < len(line) && !utf8.RuneStart(line[n]) {
		n--
	}
	return line[:n], fmt.Sprintf(" … [line cut: %d more bytes]", size-n)
}

// drops counts dropped lines not yet reported.
type drops struct {
	lines int
	bytes int64
	since time.Time // when the count was last reported or started
}

func (d *drops) add(size int) {
	d.lines++
	d.bytes += int64(size)
}

// take returns the marker reporting the count and starts over; "" when
// nothing was dropped.
func (d *drops) take() string {
	if d.lines == 0 {
		return ""
	}
	unit := "lines"
	if d.lines == 1 {
		unit = "line"
	}
	s := fmt.Sprintf("… %d %s (%d bytes) dropped: guest log limit", d.lines, unit, d.bytes)
	*d = drops{}
	return s
}

// bucket is a token bucket: max tokens, refilled at rate per second.
type bucket struct {
	tokens, max, rate float64
	last              time.Time
	off               bool // unlimited
}

// has refills the bucket up to now and reports whether it holds n tokens.
func (b *bucket) has(now time.Time, n float64) bool {
	if b.off {
		return true
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.max, b.tokens+dt*b.rate)
		b.last = now
	}
	return b.tokens >= n
}

// take removes n tokens; has said they are there.
func (b *bucket) take(n float64) {
	if !b.off {
		b.tokens -= n
	}
}

type runLogKey struct{}

// WithRunLog returns ctx carrying sink as the log of the run that
// Deployment.Invoke(ctx, ...) performs: a driver that can tell which lines
// an invocation wrote sends them there, within the run's and the
// service's limits, instead of to Spec.Log. The node passes a sink that
// tags each line with the run's id.
func WithRunLog(ctx context.Context, sink func(line string)) context.Context {
	return context.WithValue(ctx, runLogKey{}, sink)
}

// RunLogOf returns the run's log sink ctx carries (see WithRunLog), or nil.
func RunLogOf(ctx context.Context) func(line string) {
	sink, _ := ctx.Value(runLogKey{}).(func(string))
	return sink
}
