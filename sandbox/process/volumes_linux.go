package process

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/jail"
)

// volumeBinds shows spec's volumes read-write, noexec, at their paths. A
// volume is its workers' own: when the node is root, its directory and
// what it holds are given to the workers' host user (files the node wrote,
// uploads or a wasm version's, included), so a worker can change them.
// The size is not enforced here: the node measures each volume before and
// after every run (docs/design.md section 5, "Volumes").
func (d *Driver) volumeBinds(spec sandbox.Spec) ([]jail.Bind, error) {
	binds := make([]jail.Bind, 0, len(spec.Volumes))
	for _, v := range spec.Volumes {
		if os.Geteuid() == 0 {
			if err := chownTree(v.Dir, d.cfg.UID, d.cfg.GID); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
		binds = append(binds, jail.Bind{Source: v.Dir, Target: v.Path, Write: true, NoExec: true})
	}
	return binds, nil
}

// chownTree gives dir and everything below it, links themselves not their
// targets, to uid and gid, skipping what already has them.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if owner, group, ok := ownerOf(info); ok && owner == uid && group == gid {
			return nil
		}
		return os.Lchown(p, uid, gid)
	})
}

func ownerOf(info fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
