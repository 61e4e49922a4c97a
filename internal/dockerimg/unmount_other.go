//go:build !linux

package dockerimg

// unmountUnder does nothing off Linux, where debootstrap does not run.
func unmountUnder(dir string) error { return nil }
