package jail

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CgroupDirs are the directories of one process's cgroups on this host,
// for reading its usage: the v1 memory and cpuacct hierarchies' where they
// are mounted, else the v2 unified hierarchy's.
type CgroupDirs struct {
	Memory, CPUAcct string // v1; empty when not mounted
	Unified         string // v2; empty when Memory is set
}

// CgroupsOf returns the cgroup directories of process pid, as
// /proc/<pid>/cgroup names them under the cgroup file systems mounted in
// this mount namespace, and false when none is found (another host's
// process, a hierarchy not mounted here).
func CgroupsOf(pid int) (CgroupDirs, bool) {
	own, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return CgroupDirs{}, false
	}
	mounts, err := readCgroupMounts()
	if err != nil {
		return CgroupDirs{}, false
	}
	// under returns the directory of cgroup path p in mount m, or "" when
	// m does not show it.
	under := func(m cgroupMount, p string) string {
		rel, err := filepath.Rel(m.root, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return ""
		}
		return filepath.Join(m.point, rel)
	}
	var dirs CgroupDirs
	for _, line := range strings.Split(strings.TrimSpace(string(own)), "\n") {
		// 4:memory:/docker/<id>, 2:cpu,cpuacct:/docker/<id>, 0::/system.slice/docker-<id>.scope
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, m := range mounts {
			switch {
			case m.v2 && f[0] == "0" && f[1] == "":
				dirs.Unified = under(m, f[2])
			case !m.v2:
				for _, c := range strings.Split(f[1], ",") {
					if !contains(m.controllers, c) {
						continue
					}
					switch c {
					case ctlMemory:
						dirs.Memory = under(m, f[2])
					case ctlCPUAcct:
						dirs.CPUAcct = under(m, f[2])
					}
				}
			}
		}
	}
	if dirs.Memory != "" {
		dirs.Unified = ""
	}
	return dirs, dirs != CgroupDirs{}
}
