package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// What the CLI does for a person at a terminal, and only there: colours
// in its tables (unless $NO_COLOR is set or $TERM is dumb), a spinner with
// the time elapsed while it waits on the node, a progress bar while it
// uploads. Pipes and files get the plain text, byte for byte.

// isTerminal reports whether w is a terminal: a character device, or a
// test's writer whose Terminal method says so.
func isTerminal(w io.Writer) bool {
	switch w := w.(type) {
	case terminal:
		return w.Terminal()
	case colorWriter:
		return isTerminal(w.Writer)
	case *os.File:
		fi, err := w.Stat()
		return err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	return false
}

// colorWriter is standard output at a terminal that takes colours: the
// print functions colour their words when they write to one.
type colorWriter struct{ io.Writer }

// withColor wraps the CLI's standard output in a colorWriter when it is a
// terminal and colours are not turned off.
func (env *cli) withColor() {
	if env.getenv("NO_COLOR") != "" || env.getenv("TERM") == "dumb" || !isTerminal(env.stdout) {
		return
	}
	env.stdout = colorWriter{env.stdout}
}

// palette colours words by what they mean; the zero palette leaves them
// as they are.
type palette bool

// paletteOf is the palette for writing to w.
func paletteOf(w io.Writer) palette {
	_, ok := w.(colorWriter)
	return palette(ok)
}

// word colours s by its first word: green for what went well, red for
// what failed, yellow for what was skipped, stopped or is waiting, the
// terminal's own colour for anything else. Every coloured word has the
// same number of escape bytes, so that a table's columns stay aligned
// when each cell of a column (its heading too) goes through word.
func (p palette) word(s string) string {
	if !p {
		return s
	}
	return "\x1b[" + colorCode(s) + "m" + s + "\x1b[0m"
}

func colorCode(s string) string {
	first, _, _ := strings.Cut(s, " ")
	switch first {
	case "ok", "healthy", "up", "started", "deployed", "running", "admitted", "run":
		return "32"
	case "error", "failed", "crashed", "oom", "timeout", "lost", "unhealthy", "rejected", "refused", "FAIL":
		return "31"
	case "skipped", "noop", "stopped", "stopping", "cancelled", "cancelling", "draining", "left", "dormant", "queued":
		return "33"
	}
	return "39"
}

// spinner shows what the CLI waits for, with the time elapsed, on
// standard error at a terminal; stop clears its line. Elsewhere it shows
// nothing.
func (env *cli) spinner(what string) (stop func()) {
	stop, _ = env.spinnerSay(what)
	return stop
}

// spinnerSay is spinner with a second line of text, what the waited-on
// work says it does now, which say replaces ("" shows none).
func (env *cli) spinnerSay(what string) (stop func(), say func(string)) {
	if !isTerminal(env.stderr) {
		return func() {}, func(string) {}
	}
	done := make(chan struct{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		saying string
	)
	say = func(s string) {
		mu.Lock()
		defer mu.Unlock()
		saying = s
	}
	wg.Go(func() {
		frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
		start := time.Now()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			mu.Lock()
			now := saying
			mu.Unlock()
			if now != "" {
				now = ": " + now
			}
			fmt.Fprintf(env.stderr, "\r%c %s %.1fs%s\x1b[K", frames[i%len(frames)], what, time.Since(start).Seconds(), now)
			select {
			case <-done:
				fmt.Fprint(env.stderr, "\r\x1b[K")
				return
			case <-t.C:
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}, say
}

// progressBar draws an upload's progress on standard error at a
// terminal, at most ten times a second; it returns nil elsewhere.
func (env *cli) progressBar(what string) func(sent, total int64) {
	if !isTerminal(env.stderr) {
		return nil
	}
	var mu sync.Mutex
	var last time.Time
	return func(sent, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if sent < total && time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		const width = 30
		fill := width
		if total > 0 {
			fill = int(int64(width) * sent / total)
		}
		fmt.Fprintf(env.stderr, "\r%s [%s%s] %s / %s\x1b[K", what, strings.Repeat("█", fill), strings.Repeat("·", width-fill), size(sent), size(total))
		if sent >= total {
			fmt.Fprint(env.stderr, "\r\x1b[K")
		}
	}
}
