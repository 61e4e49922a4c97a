//go:build wasip1

package andromeda

import "unsafe"

//go:wasmimport andromeda usage
func hostUsage(namePtr unsafe.Pointer, nameLen uint32, amount float64) uint32

// reportUsage hands one report to the host; 0 means added.
func reportUsage(name string, amount float64) bool {
	return hostUsage(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), amount) == 0
}
