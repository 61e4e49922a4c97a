// Package spin holds Reader, the pipe reader that polls before it parks:
// after each message it keeps reading its pipe with non-blocking reads for a
// short while before it waits in the Go poller, so that a peer sending back
// to back finds it awake. Both ends of the runtime protocol use it: the Go
// worker (runtimes/go) on its standard input and the process driver on each
// worker's output. It imports only the standard library and holds nothing
// of the protocol itself.
package spin
