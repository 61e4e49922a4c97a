package jail

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// initConfig is what the jail init (MaybeInit, in the re-executed node
// binary) receives on file descriptor 3: how to build the jail's view of
// the file system, who to become and what to execute.
type initConfig struct {
	Root      string    `json:"root"`   // the host skeleton directory that becomes /
	Mounts    []mountOp `json:"mounts"` // applied in order, targets inside Root
	Hostname  string    `json:"hostname"`
	Loopback  bool      `json:"loopback"` // bring lo up: the jail has its own network namespace
	UID       int       `json:"uid"`      // uid and gid to run as, in the jail's user namespace
	GID       int       `json:"gid"`
	Setgroups bool      `json:"setgroups"` // setgroups is allowed (root hosts): clear supplementary groups
	Files     int       `json:"files"`     // RLIMIT_NOFILE
	NProc     int       `json:"nproc"`     // RLIMIT_NPROC when no pids cgroup; 0 leaves it
	Seccomp   bool      `json:"seccomp"`
	Dir       string    `json:"dir"`
	Argv      []string  `json:"argv"`
	Env       []string  `json:"env"`
	// Builtin, when set, runs the function MaybeInit was given under this
	// name inside the jail instead of executing Argv.
	Builtin string `json:"builtin,omitempty"`
}

// mountOp is one mount the init performs inside the new root.
type mountOp struct {
	Kind   string `json:"kind"` // bind, overlay (a directory, read-only, its host path hidden), tmpfs, proc, mask (bind /dev/null over a file), rebind (a path onto itself, read-only)
	Source string `json:"source,omitempty"`
	Target string `json:"target"`
	Write  bool   `json:"write,omitempty"`
	NoExec bool   `json:"noexec,omitempty"`
	Dev    bool   `json:"dev,omitempty"`  // a device node: no nodev
	Data   string `json:"data,omitempty"` // tmpfs options
}

// skeletonPerms is the mode of a skeleton's directories.
const skeletonPerms = 0o755

// skelEntry is one path of a skeleton: a directory, an empty file (a
// mount point for a file), a symbolic link or a small file.
type skelEntry struct {
	Path string `json:"path"`
	Kind string `json:"kind"` // dir, file, link, data
	Data string `json:"data,omitempty"`
}

// build returns the mounts of a jail of s and the skeleton they need.
func build(s Spec) ([]mountOp, []skelEntry) {
	var ops []mountOp
	var skel []skelEntry
	seen := map[string]bool{}
	add := func(e skelEntry) {
		if !seen[e.Path] {
			seen[e.Path] = true
			skel = append(skel, e)
		}
	}
	mountAt := func(op mountOp, file bool) {
		kind := "dir"
		if file {
			kind = "file"
		}
		add(skelEntry{Path: op.Target, Kind: kind})
		ops = append(ops, op)
	}
	hostBind := func(src, dst string, noexec bool) {
		fi, err := os.Stat(src)
		if err != nil {
			return // optional: absent on this host
		}
		mountAt(mountOp{Kind: "bind", Source: src, Target: dst, NoExec: noexec, Dev: fi.Mode()&os.ModeCharDevice != 0}, !fi.IsDir())
	}

	// The host's programs and libraries, read-only.
	hostBind("/usr", "/usr", false)
	for _, name := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		p := "/" + name
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(p); err == nil {
				add(skelEntry{Path: p, Kind: "link", Data: target})
			}
		case fi.IsDir():
			hostBind(p, p, false)
		}
	}
	for _, t := range s.Tools {
		hostBind(t, t, false)
	}

	// /etc: only what programs need to load libraries, certificates and
	// time zones; no accounts, no secrets.
	add(skelEntry{Path: "/etc", Kind: "dir"})
	for _, p := range []string{"/etc/ld.so.cache", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives"} {
		hostBind(p, p, true)
	}
	if target, err := os.Readlink("/etc/localtime"); err == nil {
		add(skelEntry{Path: "/etc/localtime", Kind: "link", Data: target})
	}
	if s.HostNetwork {
		for _, p := range []string{"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf", "/etc/services", "/etc/protocols"} {
			if real, err := filepath.EvalSymlinks(p); err == nil {
				hostBind(real, p, true)
			}
		}
	} else {
		add(skelEntry{Path: "/etc/hosts", Kind: "data", Data: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"})
	}

	// A process file system of the jail's own PID namespace, with the
	// entries that describe the host kernel masked.
	mountAt(mountOp{Kind: "proc", Target: "/proc"}, false)
	for _, p := range []string{"kcore", "keys", "key-users", "timer_list", "sched_debug", "sysrq-trigger", "latency_stats", "kallsyms"} {
		ops = append(ops, mountOp{Kind: "mask", Target: "/proc/" + p})
	}
	for _, p := range []string{"sys", "irq", "bus", "fs"} {
		ops = append(ops, mountOp{Kind: "rebind", Target: "/proc/" + p})
	}

	// /dev: the harmless character devices and the usual links.
	add(skelEntry{Path: "/dev", Kind: "dir"})
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		hostBind("/dev/"+d, "/dev/"+d, true)
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		add(skelEntry{Path: "/dev/" + name, Kind: "link", Data: target})
	}
	scratch := strconv.FormatInt(max(s.Scratch, 1<<20), 10)
	mountAt(mountOp{Kind: "tmpfs", Target: "/dev/shm", Write: true, NoExec: true, Data: "mode=1777,size=" + scratch}, false)

	// The private scratch directory: a tmpfs whose pages the jail's
	// memory limit counts.
	mountAt(mountOp{Kind: "tmpfs", Target: Scratch, Write: true, NoExec: true, Data: "mode=1777,size=" + scratch}, false)

	for _, b := range s.Binds {
		fi, err := os.Stat(b.Source)
		file := err == nil && !fi.IsDir()
		kind := "bind"
		if !file && !b.Write {
			kind = "overlay"
		}
		mountAt(mountOp{Kind: kind, Source: b.Source, Target: b.Target, Write: b.Write, NoExec: b.NoExec}, file)
	}
	sortSkeleton(skel)
	return ops, skel
}

// sortSkeleton orders entries so that parents come before children.
func sortSkeleton(skel []skelEntry) {
	slices.SortStableFunc(skel, func(a, b skelEntry) int { return strings.Compare(a.Path, b.Path) })
}

// skeletonDir returns the directory of the skeleton skel under workDir,
// creating it the first time. A skeleton holds only empty directories,
// empty files, links and the static files of skel; the init mounts it
// read-only as the jail's root and everything else on top of it. It is
// shared by every jail with the same layout, keyed by its contents.
func skeletonDir(workDir string, skel []skelEntry) (string, error) {
	raw, err := json.Marshal(skel)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	dir := filepath.Join(workDir, "roots", hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", fmt.Errorf("create skeleton: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return "", fmt.Errorf("create skeleton: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, skeletonPerms); err != nil {
		return "", fmt.Errorf("create skeleton: %w", err)
	}
	for _, e := range skel {
		p := filepath.Join(tmp, e.Path)
		if err := os.MkdirAll(filepath.Dir(p), skeletonPerms); err != nil {
			return "", fmt.Errorf("create skeleton: %w", err)
		}
		switch e.Kind {
		case "dir":
			err = os.Mkdir(p, skeletonPerms)
		case "file":
			err = os.WriteFile(p, nil, 0o644)
		case "data":
			err = os.WriteFile(p, []byte(e.Data), 0o644)
		case "link":
			err = os.Symlink(e.Data, p)
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("create skeleton: %w", err)
		}
	}
	// Directories MkdirAll created for intermediate paths are 0755 too;
	// make sure umask did not narrow any of them.
	_ = filepath.Walk(tmp, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			_ = os.Chmod(p, skeletonPerms)
		}
		return nil
	})
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) {
		if _, statErr := os.Stat(dir); statErr != nil {
			return "", fmt.Errorf("create skeleton: %w", err)
		}
	}
	return dir, nil
}

// Hiding host paths. The root field of /proc/self/mountinfo (the fourth) is
// the mounted directory's path inside its file system, so a bind mount of
// WorkDir/roots/<hash>, of the unpacked service under the node's data dir
// or of WorkDir/deps/<service> would tell the worker where the node keeps
// its data. The sandbox root and every directory it shows read-only
// (service, shim, dependencies) are instead the lower layers of a
// read-only overlayfs mount, whose root field is "/" and whose options
// name its layers only as /proc/self/fd/N of the init (closed before the
// worker runs). Nothing is copied, so a large service or dependency tree
// costs no memory and no start-up time. Where overlayfs cannot be mounted
// (no overlay module, a kernel older than 5.11 in a user namespace, a
// lower file system overlayfs refuses) the init falls back to the bind
// mount and the host path shows as before.

// mountRoot mounts the skeleton directory root onto itself, as an overlay
// whose second layer is an empty tmpfs (a layer inside the skeleton would
// overlap it), or as a bind mount where overlayfs is unavailable.
func mountRoot(root string) error {
	skel, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(skel)
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,nr_inodes=1,mode=0755"); err == nil {
		if err := overlay(skel, root, 0); err == nil {
			return nil
		}
		_ = unix.Unmount(root, unix.MNT_DETACH)
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind root %s: %w", root, err)
	}
	return nil
}

// mountOverlay performs an overlay mountOp: the directory op.Source shown
// read-only at op.Target under root, the target's own empty skeleton
// directory as the overlay's second layer; a bind mount where overlayfs is
// unavailable.
func mountOverlay(root string, op mountOp) error {
	target := filepath.Join(root, op.Target)
	fail := func(err error) error { return fmt.Errorf("mount overlay of %s on %s: %w", op.Source, op.Target, err) }
	src, err := unix.Open(op.Source, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	defer unix.Close(src)
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	var st unix.Statfs_t
	if err := unix.Fstatfs(src, &st); err != nil {
		return fail(err)
	}
	if op.NoExec || uintptr(st.Flags)&unix.ST_NOEXEC != 0 {
		flags |= unix.MS_NOEXEC // as the bind would be: a noexec host mount stays noexec
	}
	if err := overlay(src, target, flags); err == nil {
		return nil
	}
	return mount(root, mountOp{Kind: "bind", Source: op.Source, Target: op.Target, NoExec: op.NoExec})
}

// overlay mounts at target a read-only overlay of the directory open as
// top (an O_PATH descriptor) over target's current directory, which must
// be empty, naming both layers only by descriptor.
func overlay(top int, target string, flags uintptr) error {
	empty, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(empty)
	data := fmt.Sprintf("lowerdir=/proc/self/fd/%d:/proc/self/fd/%d", top, empty)
	return unix.Mount("andromeda", target, "overlay", flags|unix.MS_RDONLY, data)
}
