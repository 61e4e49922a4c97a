package sandbox

import (
	"context"
	"io"
)

// A RawWorker is one worker of a driver whose deployments run workers that
// speak the runtime protocol (docs/runtime-protocol.md), started on its
// own, outside any deployment and in the same sandbox a deployment's
// worker gets, with nothing sent to it yet: the conformance kit speaks the
// protocol with it directly, to check what a deployment never does (a
// malformed line, an invoke after shutdown, another protocol version). The
// caller owns it: it must call Wait, which also releases what the worker
// held; Kill before Wait when it does not want to wait for the exit.
type RawWorker struct {
	// Init is the init message a deployment of the same Spec would send
	// first, without its newline.
	Init []byte
	// Stdin is the worker's standard input; closing it is the end of file
	// for the worker.
	Stdin io.WriteCloser
	// Stdout carries the worker's protocol messages; Stderr its log. The
	// caller must read both (or the worker may block on a full pipe).
	Stdout io.Reader
	Stderr io.Reader
	// Wait waits for the worker to exit and returns its exit status, or -1
	// and a description when a signal ended it.
	Wait func() (status int, how string)
	// Kill kills the worker and everything it started. Safe to call at
	// any time, and more than once.
	Kill func()
}

// A RawStarter is a Driver that can start a RawWorker of spec (the
// process driver). spec is what Deploy would take; its Mode decides the
// init's max_in_flight (1 in command mode).
type RawStarter interface {
	StartRaw(ctx context.Context, spec Spec) (*RawWorker, error)
}
