package bus

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// records is a slog.Handler that keeps what it is given.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) take() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.recs
	r.recs = nil
	return out
}

func attr(rec slog.Record, key string) (slog.Value, bool) {
	var v slog.Value
	found := false
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, found = a.Value, true
			return false
		}
		return true
	})
	return v, found
}

func TestServerLogRateLimit(t *testing.T) {
	h := &records{}
	var errs []string
	l := newServerLog(slog.New(h), func(msg string) { errs = append(errs, msg) })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }

	for i := range 12 {
		l.Errorf("write %d: no space left on device", i)
	}
	l.Warnf("another format") // its own budget
	got := h.take()
	if len(got) != logBurst+1 {
		t.Fatalf("wrote %d lines for 12 errors and a warning, want %d", len(got), logBurst+1)
	}
	if got[0].Level != slog.LevelError || got[0].Message != "write 0: no space left on device" {
		t.Errorf("first line = %v %q", got[0].Level, got[0].Message)
	}
	if len(errs) != 12 {
		t.Errorf("onError saw %d lines, want all 12 (it is told before the limit)", len(errs))
	}

	// Pre-formatted lines ("%s") are limited by their text, not all together.
	l.Errorf("%s", "one")
	l.Errorf("%s", "two")
	if got := h.take(); len(got) != 2 {
		t.Errorf("two different %%s lines wrote %d, want 2", len(got))
	}

	// The next window writes again and says how many were dropped.
	now = now.Add(logWindow)
	l.Errorf("write %d: no space left on device", 99)
	got = h.take()
	if len(got) != 1 {
		t.Fatalf("after a window: %d lines, want 1", len(got))
	}
	if v, ok := attr(got[0], logSuppressed); !ok || v.Int64() != 7 {
		t.Errorf("suppressed = %v (present %v), want 7", v, ok)
	}
}

func TestServerLogFatalDoesNotExit(t *testing.T) {
	h := &records{}
	l := newServerLog(slog.New(h), nil)
	l.Fatalf("Can't start JetStream: %v", "disk on fire")
	got := h.take()
	if len(got) != 1 || got[0].Level != slog.LevelError {
		t.Fatalf("Fatalf wrote %v", got)
	}
	if v, ok := attr(got[0], logFatal); !ok || !v.Bool() {
		t.Errorf("fatal attr = %v, %v; want true", v, ok)
	}
	if f := l.lastFatal(); f != "Can't start JetStream: disk on fire" {
		t.Errorf("lastFatal = %q", f)
	}
}

func TestServerLogLevels(t *testing.T) {
	h := &records{}
	l := newServerLog(slog.New(h), nil)
	l.Noticef("n")
	l.Debugf("d")
	l.Tracef("t")
	l.Warnf("w")
	want := []slog.Level{levelNATSNotice, levelNATSDebug, levelNATSTrace, slog.LevelWarn}
	got := h.take()
	if len(got) != len(want) {
		t.Fatalf("wrote %d lines, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Level != want[i] {
			t.Errorf("line %q at %v, want %v", r.Message, r.Level, want[i])
		}
	}
}

// A fatal condition in the embedded server (here: its port is taken) fails
// Open at once with the server's words, and does not exit the process.
func TestOpenReportsFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	b, err := Open(context.Background(), Config{Dir: t.TempDir(), Listen: ln.Addr().String(), Logger: slog.New(&records{})})
	if err == nil {
		b.Close()
		t.Fatal("Open on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), "Error listening on port") {
		t.Errorf("Open error = %v, want the server's fatal line", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open took %s to fail, want it at once", d)
	}
}
