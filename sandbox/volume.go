package sandbox

import (
	"errors"
	"io/fs"
	"path/filepath"
)

// Volume is a host directory a deployment shows its guest read-write at
// Path: a preopened directory for wasm, a bind mount for process workers.
// The node owns the directory (it is the service's own, kept across runs
// and versions); drivers never create or delete it, and must not let a
// guest reach anything outside it through it (a symbolic link inside that
// points out is not followed out).
type Volume struct {
	Name string // the manifest's volume name, for errors
	Dir  string // the host directory
	Path string // the absolute guest path
	// Size is the most the volume may hold, in bytes, as Usage counts it.
	// A driver that can enforce it while the guest writes (wasm) fails the
	// write that would pass it with ENOSPC; the node measures every
	// volume before and after each run either way.
	Size int64
}

// BlockSize is the unit volume usage is counted in.
const BlockSize = 4 << 10

// FileCharge is what a regular file of size bytes counts against its
// volume: its size rounded up to whole blocks, at least one block.
func FileCharge(size int64) int64 {
	if size <= 0 {
		return BlockSize
	}
	return (size + BlockSize - 1) / BlockSize * BlockSize
}

// VolumeUsage measures what the directory dir holds, as volume sizes
// count it: FileCharge for each regular file and one block for every other
// entry (directory, symbolic link, anything else) below dir; dir itself is
// free. Links are not followed, and a file with several hard links counts
// once per link. A missing dir holds nothing.
func VolumeUsage(dir string) (int64, error) {
	var used int64
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		switch {
		case err != nil:
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		case p == dir:
			return nil
		case e.Type().IsRegular():
			info, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			used += FileCharge(info.Size())
		default:
			used += BlockSize
		}
		return nil
	})
	return used, err
}
