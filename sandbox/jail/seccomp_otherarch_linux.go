//go:build linux && !amd64 && !arm64

package jail

import "errors"

var errNoSeccomp = errors.New("seccomp: no filter for this architecture")

// seccompAvailable reports that no filter is built for this architecture:
// the offer says the layer does not hold.
func seccompAvailable() error { return errNoSeccomp }

func installSeccomp() error { return errNoSeccomp }
