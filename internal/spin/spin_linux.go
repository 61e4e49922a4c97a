package spin

import (
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"
)

// Wait is how long a reader polls its pipe, after each message, before it
// parks in the Go poller. Waking a parked thread on another CPU costs tens
// of microseconds on virtual machines (measured on the 2-vCPU machine of
// BENCHMARKS.md: a pipe round trip between two processes on two vCPUs takes
// 49 µs when both sleep between messages, 4 µs when both poll); polling a
// little keeps warm round trips near the cost of their system calls. The
// price is at most Wait of CPU time per message for a peer that then goes
// quiet.
const Wait = 100 * time.Microsecond

// Reader reads a pollable file, polling it with non-blocking reads for up
// to spin (yielding the processor between tries; not at all when want is
// set and reports false), then waiting in the Go poller. A Reader is not
// safe for concurrent reads.
type Reader struct {
	rc   syscall.RawConn
	spin time.Duration
	want func() bool
}

// NewReader wraps f, which must be in non-blocking mode (os.Pipe's ends
// are), to poll for up to spin per read (Wait is the usual value; zero or
// less never polls). want, when not nil, is asked at the start of each read
// whether to poll at all. The caller keeps f and closes it.
func NewReader(f *os.File, spin time.Duration, want func() bool) (*Reader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &Reader{rc: rc, spin: spin, want: want}, nil
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	var n int
	var rerr error
	spun := r.spin <= 0 || (r.want != nil && !r.want())
	var deadline time.Time
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			m, err := syscall.Read(int(fd), p)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN):
				if spun {
					return false // wait in the poller
				}
				now := time.Now()
				if deadline.IsZero() {
					deadline = now.Add(r.spin)
				} else if now.After(deadline) {
					spun = true
					return false
				}
				runtime.Gosched()
				continue
			case err != nil:
				rerr = err
			case m == 0:
				rerr = io.EOF
			}
			n = max(m, 0)
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}
