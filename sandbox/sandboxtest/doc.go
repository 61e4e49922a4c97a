// Package sandboxtest is the conformance suite every sandbox driver runs
// against itself, and the one guest protocol the suite drives. A driver's
// test calls Run with a Harness that supplies the driver and a Spec deploying
// the suite's guest, and every case runs in each mode the harness supports.
// The cases are written once, against T, the part of *testing.T they use:
// Certify runs the protocol's cases (the kit) against a language runtime
// outside `go test` and prints a report (this is `andromeda conformance`).
// The package holds no driver code. Require is the shared skip-or-fail rule
// for tests that need something the host may not have; GoGuest and GoBuild
// build the Go guest (for wasip1, or natively for the process driver).
//
// # The guest protocol
//
// One guest program per language covers every case. It is an ordinary
// service: it receives the contract's Input and returns an Output. The
// input's message is a JSON object whose "do" field says what to do; the
// other fields are that operation's arguments. The operations, with their
// exact texts, are the table in docs/runtime-protocol.md ("The
// conformance guest"): echo, input, noop, nothing, panic, exit, spin,
// sleep, wait, log, fill, alloc, balloon, readfile, writefile, dial and
// env; the Go guest also has recurse (the wasm driver's deadline test). Package guest implements those a wasm guest can (all but wait and
// log, which need the runtime protocol); guests/go serves it for the wasm
// driver, and the process driver's exec guest adds wait and log.
//
// # Cases
//
// For each mode the driver suite (Run) checks, through sandbox.Call: echo
// of several JSON values, the input pass-through, a 1 MiB input,
// multi-byte and escaped text (NUL, emoji, surrogate escapes, line
// separators), noop with and without a reason, panic and non-zero exit
// (crashed), spin and sleep (timeout, and Invoke returns within the
// timeout plus Harness.Slack), balloon (oom), no file system, no network,
// no environment leak, 8 concurrent callers, a call cancelled while it
// runs (context.Canceled), usage reporting, that the deployment keeps
// working after each failing case, and that Stop is idempotent, stops an
// idle deployment within a second, stops an invocation in flight after its
// grace period and makes Invoke fail with sandbox.ErrStopped.
//
// The kit (Certify) runs the protocol's share of those in each mode
// (echo, input, large-input, unicode, noop, noop-without-reason, panic,
// exit, concurrent, spin, stop), three of its own (log: the guest's log
// message reaches the run's log; cancel-wait: a cancelled wait is
// answered within the grace, without the worker being killed; oom: alloc
// of 2^40 bytes ends oom), then the protocol checks, which speak the
// protocol with one worker directly (sandbox.RawStarter): handshake,
// cancel, log, bad-input, unknown-message, max-line, eof, shutdown,
// init-error and protocol-version. docs/runtime-protocol.md ("The
// conformance kit") says what each expects.
package sandboxtest
