package docker

// Temporary: the contract's process.Proc until the pool lands.

import (
	"io"
	"syscall"
	"time"
)

type Proc interface {
	Stdin() io.WriteCloser
	Stdout() io.ReadCloser
	Stderr() io.ReadCloser
	Wait() ProcState
	Kill()
	CPUTime() time.Duration
	PeakMemory() int64
	OOMKills() int
	Release(wait time.Duration) error
}

type ProcState struct {
	Exited      bool
	Code        int
	Signal      syscall.Signal
	SetupFailed bool
	OOMKilled   bool
	Err         error
}
