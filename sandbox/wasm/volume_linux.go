package wasm

import (
	"io/fs"
	"os"
	"strconv"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
)

// reopenSupported says volumes can be shown here: reopen needs Linux's
// /proc/self/fd.
const reopenSupported = true

// procFD is /proc/self/fd as a wazero file system: opening "N" there opens
// what descriptor N is open on, whatever path led to it, without resolving
// any path again.
var procFD = sysfs.DirFS("/proc/self/fd")

// reopen opens what anchor is open on as a wazero file with flag.
func reopen(anchor *os.File, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	return procFD.OpenFile(strconv.FormatUint(uint64(anchor.Fd()), 10), flag, perm)
}
