package wasm

import "syscall"

// reserve maps n bytes of address space (rounded up to whole pages) that
// nothing may touch yet, or returns nil when n is 0 or the system refuses
// (the memory is then a Go slice). The mapping commits no memory
// (MAP_NORESERVE) until openPages makes part of it accessible.
func reserve(n uint64) []byte {
	page := uint64(syscall.Getpagesize())
	n = (n + page - 1) / page * page
	if n == 0 || n > 1<<40 {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	return b
}

// openPages makes b, a part of a reservation starting at a page boundary,
// readable and writable; the pages are zero until written.
func openPages(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return syscall.Mprotect(b, syscall.PROT_READ|syscall.PROT_WRITE)
}

// release unmaps a reservation.
func release(b []byte) { _ = syscall.Munmap(b) }
