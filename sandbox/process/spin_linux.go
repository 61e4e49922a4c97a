package process

import (
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"
)

// spinWait is how long a worker's reader polls its pipe, after each message,
// before it parks in the Go poller. Waking a parked thread on another CPU
// costs tens of microseconds on virtual machines (measured on the 2-vCPU
// machine of BENCHMARKS.md: a pipe round trip between two processes on two
// vCPUs takes 49 µs when both sleep between messages, 4 µs when both poll);
// polling a little keeps warm round trips near the cost of their system
// calls. The price is at most spinWait of CPU time per message for a worker
// that then goes quiet.
const spinWait = 100 * time.Microsecond

// spinReader reads a pollable file, polling it with non-blocking reads for
// up to spin (yielding the processor between tries; not at all when want
// is set and reports false), then waiting in the Go poller.
type spinReader struct {
	rc   syscall.RawConn
	spin time.Duration
	want func() bool
}

// newSpinReader wraps f, which must be in non-blocking mode (os.Pipe's ends are).
func newSpinReader(f *os.File, spin time.Duration, want func() bool) (io.Reader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &spinReader{rc: rc, spin: spin, want: want}, nil
}

func (r *spinReader) Read(p []byte) (int, error) {
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
