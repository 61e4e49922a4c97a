package jail

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCgroupsOf finds this process's own cgroups, where the host mounts a
// memory hierarchy, and checks they are the directories the kernel
// accounts it in: each lists this process.
func TestCgroupsOf(t *testing.T) {
	mounts, err := readCgroupMounts()
	if err != nil || len(mounts) == 0 {
		t.Skipf("no cgroup file system is mounted here (%v)", err)
	}
	dirs, ok := CgroupsOf(os.Getpid())
	if !ok {
		t.Fatalf("CgroupsOf(self) found nothing, with cgroup mounts %+v", mounts)
	}
	for _, d := range []string{dirs.Memory, dirs.CPUAcct, dirs.Unified} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			t.Errorf("%s is not a cgroup directory: %v", d, err)
		}
	}
	if dirs.Memory != "" && dirs.Unified != "" {
		t.Errorf("CgroupsOf = %+v: the unified directory is for hosts without a v1 memory hierarchy", dirs)
	}
	if _, ok := CgroupsOf(1 << 30); ok {
		t.Errorf("CgroupsOf(a pid that does not exist) found cgroups")
	}
}
