package jail

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseCgroupMounts(t *testing.T) {
	const mountinfo = `22 1 0:20 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
23 22 0:21 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
24 22 0:22 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
25 22 0:23 /docker/abc /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
26 22 0:24 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
27 22 0:25 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
28 1 0:26 / /mnt/with\040space rw - cgroup2 cgroup2 rw
`
	got, err := parseCgroupMounts(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []cgroupMount{
		{root: "/", point: "/sys/fs/cgroup/cpu,cpuacct", controllers: []string{"cpu", "cpuacct"}},
		{root: "/", point: "/sys/fs/cgroup/memory", controllers: []string{"memory"}},
		{root: "/docker/abc", point: "/sys/fs/cgroup/pids", controllers: []string{"pids"}},
		{root: "/", point: "/sys/fs/cgroup/systemd", controllers: nil},
		{root: "/", point: "/sys/fs/cgroup/unified", v2: true},
		{root: "/", point: "/mnt/with space", v2: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseCgroupMounts =\n%+v\nwant\n%+v", got, want)
	}
}

func TestParentDir(t *testing.T) {
	point := t.TempDir()
	m := cgroupMount{root: "/docker/abc", point: point}
	for _, c := range []struct{ own, parent, want string }{
		{"/docker/abc", "andromeda", filepath.Join(point, "andromeda")},
		{"/docker/abc/svc", "andromeda", filepath.Join(point, "svc", "andromeda")},
		{"/docker/abc", "/docker/abc/workers", filepath.Join(point, "workers")},
	} {
		got, err := parentDir(m, c.own, c.parent)
		if err != nil || got != c.want {
			t.Errorf("parentDir(own %s, %s) = %q, %v; want %q", c.own, c.parent, got, err, c.want)
		}
	}
	if _, err := parentDir(m, "/docker/abc", "/elsewhere"); err == nil {
		t.Errorf("parentDir outside the mounted subtree = nil error")
	}
}

// TestCgroupLimits checks what create writes in v1 and v2 hierarchies, on
// directories that stand in for cgroup file systems.
func TestCgroupLimits(t *testing.T) {
	read := func(dir, file string) string {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	for _, c := range []struct {
		name  string
		v2    bool
		files map[string]string // file in the jail's cgroup → value
	}{
		{"v1", false, map[string]string{
			"memory.limit_in_bytes": "67108864", "memory.memsw.limit_in_bytes": "67108864",
			"pids.max": "32", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000",
		}},
		{"v2", true, map[string]string{
			"memory.max": "67108864", "memory.swap.max": "0", "memory.oom.group": "1",
			"pids.max": "32", "cpu.max": "50000 100000",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			cg := &cgroups{ctl: map[string]controller{}}
			for _, name := range []string{ctlMemory, ctlPids, ctlCPU, ctlCPUAcct} {
				parent := filepath.Join(root, name)
				if c.v2 {
					parent = filepath.Join(root, "unified") // one hierarchy for all
				}
				if err := os.MkdirAll(parent, 0o755); err != nil {
					t.Fatal(err)
				}
				cg.ctl[name] = controller{v2: c.v2, parent: parent}
			}
			g, err := cg.create("svc", Limits{Memory: 64 << 20, Pids: 32, CPU: 0.5})
			if err != nil {
				t.Fatal(err)
			}
			defer g.remove(0) // closes its files; the directories are not empty here
			if c.v2 && len(g.dirs) != 1 || !c.v2 && len(g.dirs) != 4 {
				t.Errorf("cgroup dirs %v, want one per hierarchy", g.dirs)
			}
			for file, want := range c.files {
				var got string
				for _, dir := range g.dirs {
					if v := read(dir, file); !strings.HasPrefix(v, "<") {
						got = v
					}
				}
				if got != want {
					t.Errorf("%s = %q, want %q", file, got, want)
				}
			}
			if !strings.Contains(filepath.Base(g.dirs[0]), "-svc") || !strings.HasPrefix(filepath.Base(g.dirs[0]), workerPrefix) {
				t.Errorf("cgroup name %s, want %s<pid>-<seq>-svc", filepath.Base(g.dirs[0]), workerPrefix)
			}
		})
	}
}
