// Package crashtest holds the tests that run the andromeda binary and kill
// it with SIGKILL under load: every acknowledged run found after each
// restart (TestKillDuringLoad), each event run exactly once across a kill
// (TestEventBurstKill), and each action executed exactly once
// (TestActKill, TestActEndToEnd), and every run answered 200 stored once
// while many run records wait for their ack together (TestKillUnderFireLoad).
// They are a package of their own so that
// go test runs them beside cmd/andromeda's tests, each package within its
// own time limit. ANDROMEDA_SOAK=1 runs them at soak size.
package crashtest
