package wasm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	wsys "github.com/tetratelabs/wazero/sys"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// Volumes (sandbox.Volume) are preopened directories. wazero's own
// directory file system resolves a guest's path by joining it to the host
// directory and lets the host follow symbolic links, so a link a guest (or
// an earlier process version of the service) left in its volume could lead
// anywhere on the host. volumeFS resolves every path through an os.Root
// on the volume instead: no '..' and no link leaves it. It also holds the
// volume to its size while the guest writes: a write, truncate, create or
// mkdir that would take the volume past its size fails with EIO (wazero's
// WASI errors have no ENOSPC), by the
// count of sandbox.VolumeUsage (files in whole blocks, a block for every
// other entry). The count is measured afresh at every invocation; between
// measurements it is kept by this file system alone, so writes racing on
// one file from concurrent invocations may be counted loosely, and the
// node's measurement after each run is the backstop.

// errFull is what a guest gets for a write past its volume's size: EIO,
// as wazero's WASI errors have no ENOSPC.
const errFull = experimentalsys.EIO

// quota is one volume's size and what it holds, shared by every instance
// of a deployment.
type quota struct {
	vol  sandbox.Volume
	used atomic.Int64
}

// measure sets used to what the volume holds now.
func (q *quota) measure() error {
	used, err := sandbox.VolumeUsage(q.vol.Dir)
	if err != nil {
		return fmt.Errorf("volume %s: measure: %w", q.vol.Name, err)
	}
	q.used.Store(used)
	return nil
}

// take reserves n more bytes (n may be negative, giving back); false when
// they do not fit.
func (q *quota) take(n int64) bool {
	for {
		u := q.used.Load()
		if n > 0 && u+n > q.vol.Size {
			return false
		}
		if q.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// volumes are a deployment's volumes as wazero mounts them.
type volumes struct {
	quotas []*quota
	roots  []*os.Root
}

// openVolumes opens the volumes' directories and returns the file system
// configuration every instance of the deployment gets.
func openVolumes(vols []sandbox.Volume) (*volumes, wazero.FSConfig, error) {
	v := &volumes{}
	cfg := wazero.NewFSConfig()
	for _, vol := range vols {
		if !reopenSupported {
			v.close()
			return nil, nil, fmt.Errorf("%w: volumes need Linux", sandbox.ErrUnsupported)
		}
		root, err := os.OpenRoot(vol.Dir)
		if err != nil {
			v.close()
			return nil, nil, fmt.Errorf("volume %s: %w", vol.Name, err)
		}
		q := &quota{vol: vol}
		v.roots, v.quotas = append(v.roots, root), append(v.quotas, q)
		cfg = cfg.(sysfs.FSConfig).WithSysFSMount(&volumeFS{root: root, q: q}, vol.Path)
	}
	return v, cfg, nil
}

// measure re-measures every volume, before an invocation.
func (v *volumes) measure() error {
	if v == nil {
		return nil
	}
	for _, q := range v.quotas {
		if err := q.measure(); err != nil {
			return err
		}
	}
	return nil
}

func (v *volumes) close() {
	if v == nil {
		return
	}
	for _, r := range v.roots {
		r.Close()
	}
	v.roots = nil
}

// volumeFS is one volume as a guest sees it; see the comment above.
type volumeFS struct {
	experimentalsys.UnimplementedFS
	root *os.Root
	q    *quota
}

var _ experimentalsys.FS = (*volumeFS)(nil)

func errno(err error) experimentalsys.Errno {
	if err == nil {
		return 0
	}
	// os.Root's refusal of a path that leaves it is not a system error.
	var se syscall.Errno
	if !errors.As(err, &se) && strings.Contains(err.Error(), "path escapes from parent") {
		return experimentalsys.EPERM
	}
	return experimentalsys.UnwrapOSError(err)
}

// charge is what an entry counts against its volume.
func charge(fi fs.FileInfo) int64 {
	if fi.Mode().IsRegular() {
		return sandbox.FileCharge(fi.Size())
	}
	return sandbox.BlockSize
}

func osFlags(flag experimentalsys.Oflag) int {
	var f int
	switch flag & 3 {
	case experimentalsys.O_RDWR:
		f = os.O_RDWR
	case experimentalsys.O_WRONLY:
		f = os.O_WRONLY
	default:
		f = os.O_RDONLY
	}
	for _, m := range []struct {
		w  experimentalsys.Oflag
		os int
	}{
		{experimentalsys.O_APPEND, os.O_APPEND},
		{experimentalsys.O_CREAT, os.O_CREATE},
		{experimentalsys.O_EXCL, os.O_EXCL},
		{experimentalsys.O_TRUNC, os.O_TRUNC},
		{experimentalsys.O_SYNC, os.O_SYNC},
		{experimentalsys.O_DIRECTORY, syscall.O_DIRECTORY},
		{experimentalsys.O_NOFOLLOW, syscall.O_NOFOLLOW},
	} {
		if flag&m.w != 0 {
			f |= m.os
		}
	}
	return f
}

// OpenFile opens path through the root, so it cannot leave the volume,
// then reopens what it opened as a wazero file (reopen): the root's file
// stays open beside it, so the reopened one names the same file for as
// long as it lives.
func (v *volumeFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if path == "" {
		path = "."
	}
	var before int64 = -1 // the charge of what path held, -1 for nothing
	if fi, err := v.root.Lstat(path); err == nil {
		before = charge(fi)
	}
	creating := before < 0 && flag&experimentalsys.O_CREAT != 0
	if creating && !v.q.take(sandbox.BlockSize) {
		return nil, errFull
	}
	anchor, err := v.root.OpenFile(path, osFlags(flag), perm)
	if err != nil {
		if creating {
			v.q.take(-sandbox.BlockSize)
		}
		return nil, errno(err)
	}
	if before >= 0 && flag&experimentalsys.O_TRUNC != 0 {
		v.q.take(sandbox.BlockSize - before) // truncated to empty: one block
	}
	inner, en := reopen(anchor, flag&^(experimentalsys.O_CREAT|experimentalsys.O_EXCL|experimentalsys.O_TRUNC|experimentalsys.O_NOFOLLOW), perm)
	if en != 0 {
		anchor.Close()
		return nil, en
	}
	return &volumeFile{File: inner, anchor: anchor, q: v.q}, 0
}

func (v *volumeFS) Lstat(path string) (wsys.Stat_t, experimentalsys.Errno) {
	fi, err := v.root.Lstat(orDot(path))
	if err != nil {
		return wsys.Stat_t{}, errno(err)
	}
	return wsys.NewStat_t(fi), 0
}

func (v *volumeFS) Stat(path string) (wsys.Stat_t, experimentalsys.Errno) {
	fi, err := v.root.Stat(orDot(path))
	if err != nil {
		return wsys.Stat_t{}, errno(err)
	}
	return wsys.NewStat_t(fi), 0
}

func (v *volumeFS) Mkdir(path string, perm fs.FileMode) experimentalsys.Errno {
	if !v.q.take(sandbox.BlockSize) {
		return errFull
	}
	if err := v.root.Mkdir(path, perm); err != nil {
		v.q.take(-sandbox.BlockSize)
		if en := errno(err); en != experimentalsys.ENOTDIR {
			return en
		}
		return experimentalsys.ENOENT
	}
	return 0
}

func (v *volumeFS) Chmod(path string, perm fs.FileMode) experimentalsys.Errno {
	return errno(v.root.Chmod(path, perm))
}

func (v *volumeFS) Rename(from, to string) experimentalsys.Errno {
	var freed int64
	if fi, err := v.root.Lstat(to); err == nil {
		freed = charge(fi)
	}
	if err := v.root.Rename(from, to); err != nil {
		return errno(err)
	}
	v.q.take(-freed)
	return 0
}

func (v *volumeFS) Rmdir(path string) experimentalsys.Errno {
	fi, err := v.root.Lstat(path)
	if err != nil {
		return errno(err)
	}
	if !fi.IsDir() {
		return experimentalsys.ENOTDIR
	}
	if err := v.root.Remove(path); err != nil {
		return errno(err)
	}
	v.q.take(-sandbox.BlockSize)
	return 0
}

func (v *volumeFS) Unlink(path string) experimentalsys.Errno {
	fi, err := v.root.Lstat(path)
	if err != nil {
		return errno(err)
	}
	if fi.IsDir() {
		return experimentalsys.EISDIR
	}
	if err := v.root.Remove(path); err != nil {
		return errno(err)
	}
	v.q.take(-charge(fi))
	return 0
}

// Link is refused: a hard link would make one file's blocks count twice,
// or never leave when one name is removed.
func (v *volumeFS) Link(string, string) experimentalsys.Errno { return experimentalsys.EPERM }

func (v *volumeFS) Symlink(oldName, link string) experimentalsys.Errno {
	if !v.q.take(sandbox.BlockSize) {
		return errFull
	}
	if err := v.root.Symlink(oldName, link); err != nil {
		v.q.take(-sandbox.BlockSize)
		return errno(err)
	}
	return 0
}

func (v *volumeFS) Readlink(path string) (string, experimentalsys.Errno) {
	s, err := v.root.Readlink(path)
	return s, errno(err)
}

func (v *volumeFS) Utimens(path string, atim, mtim int64) experimentalsys.Errno {
	at, mt := utime(atim), utime(mtim)
	if at.IsZero() || mt.IsZero() {
		fi, err := v.root.Stat(path)
		if err != nil {
			return errno(err)
		}
		if mt.IsZero() {
			mt = fi.ModTime()
		}
		if at.IsZero() {
			at = mt
		}
	}
	return errno(v.root.Chtimes(path, at, mt))
}

func utime(ns int64) time.Time {
	if ns == experimentalsys.UTIME_OMIT {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func orDot(path string) string {
	if path == "" {
		return "."
	}
	return path
}

// volumeFile is an open file of a volume: writes that grow it are held to
// the volume's size.
type volumeFile struct {
	experimentalsys.File
	anchor *os.File // the file as the root opened it; keeps the reopened name valid
	q      *quota
}

// grow reserves what writing n bytes at off adds to the file's charge.
func (f *volumeFile) grow(off int64, n int) (int64, experimentalsys.Errno) {
	st, en := f.File.Stat()
	if en != 0 {
		return 0, en
	}
	end := off + int64(n)
	if end <= st.Size {
		return 0, 0
	}
	add := sandbox.FileCharge(end) - sandbox.FileCharge(st.Size)
	if add > 0 && !f.q.take(add) {
		return 0, errFull
	}
	return add, 0
}

func (f *volumeFile) Write(buf []byte) (int, experimentalsys.Errno) {
	if len(buf) == 0 {
		return 0, 0
	}
	off, en := f.File.Seek(0, io.SeekCurrent)
	if en != 0 {
		return 0, en
	}
	if f.File.IsAppend() {
		st, en := f.File.Stat()
		if en != 0 {
			return 0, en
		}
		off = st.Size
	}
	add, en := f.grow(off, len(buf))
	if en != 0 {
		return 0, en
	}
	n, en := f.File.Write(buf)
	if en != 0 && n == 0 {
		f.q.take(-add)
	}
	return n, en
}

func (f *volumeFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	if len(buf) == 0 {
		return 0, 0
	}
	add, en := f.grow(off, len(buf))
	if en != 0 {
		return 0, en
	}
	n, en := f.File.Pwrite(buf, off)
	if en != 0 && n == 0 {
		f.q.take(-add)
	}
	return n, en
}

func (f *volumeFile) Truncate(size int64) experimentalsys.Errno {
	st, en := f.File.Stat()
	if en != 0 {
		return en
	}
	diff := sandbox.FileCharge(size) - sandbox.FileCharge(st.Size)
	if diff > 0 && !f.q.take(diff) {
		return errFull
	}
	if en := f.File.Truncate(size); en != 0 {
		if diff > 0 {
			f.q.take(-diff)
		}
		return en
	}
	if diff < 0 {
		f.q.take(diff)
	}
	return 0
}

func (f *volumeFile) Close() experimentalsys.Errno {
	en := f.File.Close()
	f.anchor.Close()
	return en
}
