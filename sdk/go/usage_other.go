//go:build !wasip1

package andromeda

// reportUsage has no host to report to off wasip1.
func reportUsage(name string, amount float64) bool { return true }
