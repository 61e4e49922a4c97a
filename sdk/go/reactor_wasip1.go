//go:build wasip1

package andromeda

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"unsafe"
)

// reactor reports whether this program was built with -buildmode=c-shared,
// i.e. as a WASI reactor whose main.main never runs. The go command records
// the build mode in the binary's build information.
func reactor() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-buildmode" {
			return s.Value == "c-shared"
		}
	}
	return false
}

// The buffers of the reactor ABI. They live in package variables so that the
// garbage collector keeps them, and the host may read them, until the next
// call into the module.
var (
	inBuf  []byte       // written by the host after andromeda_alloc
	outBuf bytes.Buffer // the encoded output of the last andromeda_invoke
)

// alloc implements andromeda_alloc: it returns the address of a buffer of at
// least size bytes where the host writes the next input.
//
//go:wasmexport andromeda_alloc
func alloc(size uint32) uint32 {
	if uint32(cap(inBuf)) < size || cap(inBuf) == 0 {
		inBuf = make([]byte, max(size, 512))
	}
	inBuf = inBuf[:size]
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(inBuf[:cap(inBuf)]))))
}

// invoke implements andromeda_invoke: it serves the input the host wrote at
// ptr (the address andromeda_alloc returned) and returns the output's address
// and length packed as ptr<<32 | len.
//
//go:wasmexport andromeda_invoke
func invoke(ptr, size uint32) uint64 {
	if handler == nil {
		fail("no handler registered: in a reactor main.main does not run, call andromeda.Handle from an init function")
	}
	if cap(inBuf) == 0 || ptr != uint32(uintptr(unsafe.Pointer(unsafe.SliceData(inBuf[:cap(inBuf)])))) || size > uint32(cap(inBuf)) {
		fail(fmt.Sprintf("andromeda_invoke(%#x, %d): input is not in the buffer andromeda_alloc returned", ptr, size))
	}
	outBuf.Reset()
	if err := serve(handler, inBuf[:size], &outBuf); err != nil {
		fail(err.Error())
	}
	out := outBuf.Bytes()
	if len(out) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))<<32 | uint64(len(out))
}

// fail ends the instance: the host records the run as crashed with msg.
func fail(msg string) {
	fmt.Fprintf(os.Stderr, "andromeda: %s\n", msg)
	os.Exit(1)
}
