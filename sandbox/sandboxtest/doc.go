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
// other fields are that operation's arguments. Every implementation (Go in
// package guest, served by guests/go and by the process driver's exec guest;
// the Node.js, Python and exec shims later) must behave as follows, and must
// not special-case anything else.
//
//	do         fields         the guest...                                   the suite expects
//	echo       data (any)     returns {"emit":[{"topic":"echo",             ok; the message equals data as JSON
//	                          "message":data}]}                              (compared as decoded values)
//	input      -              returns {"emit":[{"topic":"input",            ok; run_id, service, trigger,
//	                          "message":<the whole Input it received>}]}    state and config came through
//	noop       reason         returns {"noop":reason}                        noop with that reason
//	nothing    -              returns {} (no actions, emits or reason)       error naming the reason rule
//	panic      -              raises an uncaught error/panic whose           crashed; detail contains
//	                          message is "conformance panic"                 "conformance panic"
//	exit       code           exits the process with status code             crashed; detail contains the code
//	spin       -              loops forever on the CPU, never yielding       timeout, within timeout + slack
//	sleep      -              sleeps forever in the language's sleep         timeout, within timeout + slack
//	balloon    -              allocates 1 MiB blocks forever, touching       oom
//	                          every page and keeping every block
//	readfile   path           reads the file; returns                        noop "readfile: error: ..."
//	                          {"noop":"readfile: ok: <n> bytes"} or
//	                          {"noop":"readfile: error: <message>"}
//	writefile  path           creates the file with content "x"; returns     noop "writefile: error: ..."
//	                          "writefile: ok" or "writefile: error: <msg>"   and no file on the host
//	dial       addr           opens a TCP connection to host:port (1 s       noop "dial: error: ..." and no
//	                          timeout) and writes "hello"; returns           connection at the suite's listener
//	                          "dial: ok" or "dial: error: <message>"
//	env        -              returns {"emit":[{"topic":"env","message":    no host variable leaks (the suite
//	                          {"env":["K=V",...],"args":[...]}}]}            sets a canary in its own environment)
//
// Any other "do" returns {"noop":"unknown op <do>"}. Outputs are written the
// way the guest's shape demands: stdout for commands, the return value for
// reactors, a result message for the runtime protocol.
//
// # Cases
//
// For each mode the suite checks, through sandbox.Call: echo of several
// JSON values, the input pass-through, a 1 MiB input, multi-byte and escaped
// text (NUL, emoji, surrogate escapes, line separators), noop with and without
// a reason, panic and non-zero exit (crashed), spin and sleep (timeout, and
// Invoke returns within the timeout plus Harness.Slack), balloon (oom), no
// file system, no network, no environment leak, 8 concurrent callers, a
// call cancelled while it runs (context.Canceled), usage reporting, that the
// deployment keeps working after each failing case, and that Stop is
// idempotent, stops an idle deployment within a second, stops an
// invocation in flight after its grace period and makes Invoke fail with
// sandbox.ErrStopped. The kit is echo, input, large-input, unicode, noop,
// noop-without-reason, panic, exit, concurrent, cancel, spin and stop.
package sandboxtest
