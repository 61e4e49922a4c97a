package wasm

import (
	"bytes"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// What a guest writes to standard error (and, for reactors, standard
// output) goes, line by line, to the log of the run that wrote it
// (sandbox.WithRunLog), else to Spec.Log, through one
// sandbox.LogLimiter per deployment with sandbox.DefaultLogLimit, as the
// process driver does. Exit.Detail keeps its own head and tail.

// maxLogLine is how much of one line is held while it is written; the
// rest is counted and cut (the limiter cuts at 4 KiB anyway).
const maxLogLine = 16 << 10

// newLogLimiter is the deployment's limiter in front of sink, or nil when
// there is no sink.
func newLogLimiter(sink func(string)) *sandbox.LogLimiter {
	if sink == nil {
		return nil
	}
	return sandbox.NewLogLimiter(sandbox.DefaultLogLimit(), sink)
}

// lineSplitter cuts what a guest writes into lines for its run's log.
// Used by one invocation at a time.
type lineSplitter struct {
	run  *sandbox.RunLog
	buf  []byte // the current line's start, at most maxLogLine bytes
	size int    // the current line's length so far
}

func (l *lineSplitter) write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLogLine - len(l.buf); room > 0 {
			l.buf = append(l.buf, chunk[:min(room, len(chunk))]...)
		}
		l.size += len(chunk)
		if i < 0 {
			return
		}
		l.emit()
		p = p[i+1:]
	}
}

func (l *lineSplitter) emit() {
	line := bytes.TrimSuffix(l.buf, []byte("\r"))
	l.run.LogPrefix(string(bytes.ToValidUTF8(line, []byte("\uFFFD"))), l.size)
	l.buf, l.size = l.buf[:0], 0
}

// flush logs a last line written without its newline.
func (l *lineSplitter) flush() {
	if l.size > 0 || len(l.buf) > 0 {
		l.emit()
	}
}
