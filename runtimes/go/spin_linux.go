package worker

import (
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"
)

// spinWait is how long the reader polls standard input after a message
// before it parks in the Go poller. A runner that sends invocations back to
// back finds the worker awake: waking a parked thread on another CPU costs
// tens of microseconds on virtual machines, polling a pipe a few.
const spinWait = 100 * time.Microsecond

// spinReader reads a pollable file, polling it with non-blocking reads for
// up to spin (yielding the processor between tries) before it waits in the
// Go poller.
type spinReader struct {
	rc   syscall.RawConn
	spin time.Duration
}

func newSpinReader(f *os.File) io.Reader {
	rc, err := f.SyscallConn()
	if err != nil {
		return f
	}
	return &spinReader{rc: rc, spin: spinWait}
}

func (r *spinReader) Read(p []byte) (int, error) {
	var n int
	var rerr error
	spun := false
	var deadline time.Time
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			m, err := syscall.Read(int(fd), p)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN):
				if spun {
					return false
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
