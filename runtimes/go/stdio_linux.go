package worker

import (
	"io"
	"os"
	"syscall"

	"github.com/andromeda-runner/andromeda/internal/spin"
)

// stdio returns the protocol's input and output: standard input, made
// non-blocking so that reads go through the Go poller (a blocked read then
// holds no thread, and an invocation started by the reader runs on the
// reader's processor at once) after polling briefly (spin.Reader), and a
// private copy of standard output, after which file descriptor 1 is pointed
// at standard error.
func stdio() (io.Reader, io.Writer) {
	var in io.Reader = os.Stdin
	// Only a pipe (what the driver gives): a terminal or file shared with
	// a shell must not be left non-blocking.
	var st syscall.Stat_t
	if syscall.Fstat(0, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFIFO {
		if err := syscall.SetNonblock(0, true); err == nil {
			f := os.NewFile(0, "stdin")
			in = f
			if sr, err := spin.NewReader(f, spin.Wait, nil); err == nil {
				in = sr
			}
		}
	}
	out := os.Stdout
	if fd, err := syscall.Dup(1); err == nil {
		syscall.CloseOnExec(fd)
		if err := syscall.Dup3(2, 1, 0); err == nil {
			out = os.NewFile(uintptr(fd), "protocol")
		} else {
			syscall.Close(fd)
		}
	}
	return in, out
}
