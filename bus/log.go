package bus

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Log keys of the lines the bus and its embedded server write.
const (
	logComponent  = "component"
	logFatal      = "fatal"
	logSuppressed = "suppressed"
	logErr        = "err"
)

// Levels the embedded server's lines are written at. Its notices (a start-up
// banner, every stream it loads) are detail for an operator who asks for
// debug; its debug and trace lines sit below that.
const (
	levelNATSNotice = slog.LevelDebug
	levelNATSDebug  = slog.LevelDebug - 2
	levelNATSTrace  = slog.LevelDebug - 4
)

// The server log's rate limit: logBurst lines of one format per logWindow;
// the rest are counted and the count rides on the next line written.
const (
	logBurst  = 5
	logWindow = time.Minute
	// logMaxKeys bounds the formats remembered; past it, stale ones are
	// dropped, and if none is stale a line is written unlimited.
	logMaxKeys = 1024
)

// serverLog is the embedded NATS server's server.Logger on top of a
// *slog.Logger. Each format (per level) is written at most logBurst times per
// logWindow; the lines dropped are counted and reported as "suppressed" on
// the next line of that format written. Fatalf logs at error level with
// fatal=true and never exits: the server returns after a fatal condition,
// and the bus reports it (Open fails, Health turns unhealthy). Every
// error-level line, limited or not, is passed to onError. Safe for
// concurrent use.
type serverLog struct {
	log     *slog.Logger
	onError func(msg string)
	now     func() time.Time

	mu    sync.Mutex
	seen  map[string]*logCount
	fatal string // the last Fatalf line
}

type logCount struct {
	start      time.Time // of the current window
	written    int       // in the current window
	suppressed int       // since the last line written
}

var _ server.Logger = (*serverLog)(nil)

// newServerLog returns a server.Logger writing to log; onError may be nil.
func newServerLog(log *slog.Logger, onError func(string)) *serverLog {
	return &serverLog{log: log.With(logComponent, "nats"), onError: onError, now: time.Now, seen: map[string]*logCount{}}
}

func (l *serverLog) Noticef(format string, v ...any) { l.write(levelNATSNotice, false, format, v) }
func (l *serverLog) Warnf(format string, v ...any)   { l.write(slog.LevelWarn, false, format, v) }
func (l *serverLog) Errorf(format string, v ...any)  { l.write(slog.LevelError, false, format, v) }
func (l *serverLog) Fatalf(format string, v ...any)  { l.write(slog.LevelError, true, format, v) }
func (l *serverLog) Debugf(format string, v ...any)  { l.write(levelNATSDebug, false, format, v) }
func (l *serverLog) Tracef(format string, v ...any)  { l.write(levelNATSTrace, false, format, v) }

// lastFatal is the last line logged with Fatalf, or "".
func (l *serverLog) lastFatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *serverLog) write(level slog.Level, fatal bool, format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	if fatal {
		l.mu.Lock()
		l.fatal = msg
		l.mu.Unlock()
	}
	if level >= slog.LevelError && l.onError != nil {
		l.onError(msg)
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	// The server often formats first and logs "%s": then the text is the
	// key.
	key := level.String() + " " + format
	if strings.Trim(format, "%sv ") == "" {
		key = level.String() + " " + msg
	}
	suppressed, ok := l.admit(key)
	if !ok {
		return
	}
	var attrs []slog.Attr
	if fatal {
		attrs = append(attrs, slog.Bool(logFatal, true))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int(logSuppressed, suppressed))
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// admit reports whether a line with key may be written now, and how many
// lines of that key were suppressed since the last one written.
func (l *serverLog) admit(key string) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.seen[key]
	if c == nil {
		if len(l.seen) >= logMaxKeys {
			for k, old := range l.seen {
				if now.Sub(old.start) >= logWindow && old.suppressed == 0 {
					delete(l.seen, k)
				}
			}
		}
		if len(l.seen) >= logMaxKeys {
			return 0, true
		}
		c = &logCount{start: now}
		l.seen[key] = c
	}
	if now.Sub(c.start) >= logWindow {
		c.start, c.written = now, 0
	}
	if c.written >= logBurst {
		c.suppressed++
		return 0, false
	}
	c.written++
	suppressed, c.suppressed = c.suppressed, 0
	return suppressed, true
}
