package trigger

import (
	"time"

	"golang.org/x/sys/unix"
)

// sleepPrecise sleeps for d in clock_nanosleep, which blocks this thread
// (the runtime gives its processor to other goroutines) and wakes within
// the kernel's timer slack, rather than in the network poller's whole
// milliseconds. Interrupted sleeps (Go's preemption signals) go on with
// the time that remains.
func sleepPrecise(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, &ts) == unix.EINTR {
	}
}
