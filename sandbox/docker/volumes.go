package docker

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/mount"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// containerOwnPaths are the paths the driver mounts in every container
// itself: no volume may be at, inside or above one.
var containerOwnPaths = []string{relayDir, "/tmp", lang.ServiceDir, lang.RuntimeDir}

// volumeMounts checks vols and returns their read-write bind mounts. A
// volume is its containers' own: when the node is root, its directory and
// what it holds are given to the containers' user (Config.User), as the
// process driver gives them to its workers' user, so the guest can write
// it (the node makes volume directories mode 0700, its own).
func (d *Driver) volumeMounts(vols []sandbox.Volume) ([]mount.Mount, error) {
	mounts := make([]mount.Mount, 0, len(vols))
	for i, v := range vols {
		if !filepath.IsAbs(v.Path) || !filepath.IsAbs(v.Dir) {
			return nil, fmt.Errorf("volumes[%d] %s: dir and path must be absolute, got %q at %q", i, v.Name, v.Dir, v.Path)
		}
		p := path.Clean(v.Path)
		for _, own := range containerOwnPaths {
			if p == own || strings.HasPrefix(p, own+"/") || p == "/" || strings.HasPrefix(own, p+"/") {
				return nil, fmt.Errorf("volumes[%d] %s: path %s: must not be at, inside or above %s: the docker driver mounts it in every container", i, v.Name, v.Path, own)
			}
		}
		if fi, err := os.Stat(v.Dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("volumes[%d] %s: dir %s: not a directory: %v", i, v.Name, v.Dir, err)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: v.Dir, Target: v.Path})
	}
	if os.Geteuid() != 0 {
		return mounts, nil
	}
	uid, gid, err := parseUser(d.cfg.User)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", d.cfg.User, err)
	}
	for i, v := range vols {
		if err := chownTree(v.Dir, uid, gid); err != nil {
			return nil, fmt.Errorf("volumes[%d] %s: give it to the containers' user %s: %w", i, v.Name, d.cfg.User, err)
		}
	}
	return mounts, nil
}

// parseUser splits a checked uid:gid (checkUser).
func parseUser(u string) (uid, gid int, err error) {
	us, gs, _ := strings.Cut(u, ":")
	if uid, err = strconv.Atoi(us); err != nil {
		return 0, 0, err
	}
	if gid, err = strconv.Atoi(gs); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

// chownTree gives dir and everything below it, links themselves not their
// targets, to uid and gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
