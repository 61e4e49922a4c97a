//go:build !linux

package jail

import (
	"errors"
	"runtime"
)

// errNotLinux is why no jail is built off Linux: a jail is made of Linux
// namespaces, cgroups and seccomp.
var errNotLinux = errors.New("jails need Linux (namespaces, cgroups, seccomp), this is " + runtime.GOOS)

// Host is empty off Linux: no part of a jail holds.
type Host struct{}

// Probe returns a host where no jail can be built.
func Probe(cfg Config) *Host { return &Host{} }

// Err says why no jail can be built: this is not Linux.
func (h *Host) Err() error { return errNotLinux }

// Isolation is empty off Linux.
func (h *Host) Isolation() Isolation { return Isolation{} }

// Notes says why no jail can be built.
func (h *Host) Notes() []string { return []string{errNotLinux.Error()} }

// MaybeInit returns at once: off Linux there is no jail init.
func MaybeInit(builtins map[string]func() int) {}
