//go:build !linux

package wasm

// reserve is Linux's only: elsewhere a guest's memory is a Go slice.
func reserve(uint64) []byte { return nil }

func openPages([]byte) error { panic("wasm: openPages without a reservation") }

func release([]byte) {}
