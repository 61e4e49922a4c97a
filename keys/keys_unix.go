//go:build unix

package keys

import (
	"io/fs"
	"os"
	"syscall"
)

// noFollow makes opening a key file fail on a symbolic link, so a link
// swapped in after the check is not followed.
const noFollow = syscall.O_NOFOLLOW

// owner is the uid owning fi's file and whether it is the current user.
func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, false
	}
	return int(st.Uid), int(st.Uid) == os.Geteuid()
}
