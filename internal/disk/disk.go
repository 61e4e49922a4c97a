// Package disk holds the two things the node, its bus and its API say about
// storage: how much room a filesystem has, and a size written for people
// (16 MiB, 1.5 GiB). It does not decide anything about them.
package disk

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// Usage reports the bytes an unprivileged writer may still use on the
// filesystem holding dir, and its total size.
func Usage(dir string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// Size writes n bytes for people, in binary units with at most one decimal
// (which is left out when zero): 512 B, 16 MiB, 1.5 GiB.
func Size(n int64) string {
	units := []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}}
	for _, u := range units {
		if n >= 1<<u.shift {
			v := strconv.FormatFloat(float64(n)/float64(int64(1)<<u.shift), 'f', 1, 64)
			if len(v) > 2 && v[len(v)-2:] == ".0" {
				v = v[:len(v)-2]
			}
			return v + " " + u.name
		}
	}
	return strconv.FormatInt(n, 10) + " B"
}
