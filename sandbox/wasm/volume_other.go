//go:build !linux

package wasm

import (
	"io/fs"
	"os"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// reopenSupported is false: without /proc/self/fd a volume's files cannot
// be reopened safely, so a spec with volumes is unsupported here.
const reopenSupported = false

func reopen(*os.File, experimentalsys.Oflag, fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	return nil, experimentalsys.ENOSYS
}
