//go:build !wasip1

package andromeda

// reactor is false off wasip1: a native build of a service is a command that
// speaks the same stdin/stdout protocol, which is how the process driver and
// tests run it.
func reactor() bool { return false }
