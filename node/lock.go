package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the data dir's lock file. It holds the pid of
// the node that has the data dir.
const LockFile = "LOCK"

// ErrLocked is returned when another process holds the data dir.
var ErrLocked = errors.New("data dir in use")

// DataLock is an exclusive lock on a data dir: an flock on <data>/LOCK,
// held until Unlock or the process ends (the kernel drops it on exit, so a
// killed node never leaves a stale lock behind).
type DataLock struct {
	f *os.File
}

// LockDataDir takes the data dir for this process. It fails at once with
// ErrLocked, naming the holder's pid, when another node (or a store
// command) has it: two nodes on one data dir corrupt each other's
// JetStream files.
func LockDataDir(dir string) (*DataLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w: %s holds %s; one data dir serves one node (stop it, or give this node another --data)", ErrLocked, holder, path)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DataLock{f: f}, nil
}

// Unlock releases the lock. Safe to call more than once.
func (l *DataLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	f.Truncate(0)
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return f.Close()
}
