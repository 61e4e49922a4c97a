//go:build !linux

package trigger

import "time"

// sleepPrecise sleeps for d. Elsewhere than on Linux it is time.Sleep.
func sleepPrecise(d time.Duration) { time.Sleep(d) }
