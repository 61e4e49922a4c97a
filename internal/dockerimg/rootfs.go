package dockerimg

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// epoch is the modification time of every entry a rootfs writes, so that
// the same files give the same tar and so the same tag.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// rootfs is a root file system to write as a tar: directories, files
// copied from the host and symbolic links, at absolute paths in the image,
// all owned by root. Not safe for concurrent use.
type rootfs struct {
	entries map[string]entry // by clean absolute path
}

type entry struct {
	typ  byte  // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	mode int64 // permission bits, with the sticky bit
	src  string
	link string
}

func newRootfs() *rootfs { return &rootfs{entries: map[string]entry{}} }

// dir adds directory p with mode and any missing parent with mode 0755.
// An entry already at p (a directory or a link) is kept.
func (r *rootfs) dir(p string, mode int64) {
	p = path.Clean("/" + p)
	if p == "/" {
		return
	}
	r.dir(path.Dir(p), 0o755)
	if _, ok := r.entries[p]; !ok {
		r.entries[p] = entry{typ: tar.TypeDir, mode: mode}
	}
}

// file adds the host file src at p with mode, and p's missing parents.
func (r *rootfs) file(p, src string, mode int64) {
	p = path.Clean("/" + p)
	r.dir(path.Dir(p), 0o755)
	r.entries[p] = entry{typ: tar.TypeReg, mode: mode, src: src}
}

// symlink adds a symbolic link at p to target, and p's missing parents.
func (r *rootfs) symlink(p, target string) {
	p = path.Clean("/" + p)
	r.dir(path.Dir(p), 0o755)
	r.entries[p] = entry{typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// mirror adds the host's absolute path p at the same path in the image,
// as the host has it: every symbolic link on the way (a merged /lib, a
// versioned library's alias) becomes the same link in the image, followed
// by what it points at, so that the image resolves p as the host does.
func (r *rootfs) mirror(p string) error {
	return r.mirrorDepth(p, 0)
}

func (r *rootfs) mirrorDepth(p string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("copy %s into the image: too many levels of symbolic links", p)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("copy %s into the image: the path must be absolute", p)
	}
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(p), "/"), "/")
	cur := "/"
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		last := i == len(parts)-1
		fi, err := os.Lstat(cur)
		if err != nil {
			return fmt.Errorf("copy %s into the image: %w", p, err)
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(cur)
			if err != nil {
				return fmt.Errorf("copy %s into the image: %w", p, err)
			}
			r.symlink(cur, target)
			next := target
			if !filepath.IsAbs(next) {
				next = filepath.Join(filepath.Dir(cur), target)
			}
			return r.mirrorDepth(filepath.Join(append([]string{next}, parts[i+1:]...)...), depth+1)
		case fi.IsDir():
			r.dir(cur, int64(fi.Mode().Perm()))
		case fi.Mode().IsRegular() && last:
			r.file(cur, cur, int64(fi.Mode().Perm()))
		default:
			return fmt.Errorf("copy %s into the image: %s is neither a directory, a regular file nor a symbolic link (%s)", p, cur, fi.Mode().Type())
		}
	}
	return nil
}

// write writes the root file system as a tar to w, entries in path order
// so that a parent precedes its children and the same entries give the
// same bytes.
func (r *rootfs) write(w io.Writer) error {
	paths := make([]string, 0, len(r.entries))
	for p := range r.entries {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		e := r.entries[p]
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     strings.TrimPrefix(p, "/"),
			Mode:     e.mode,
			ModTime:  epoch,
			Linkname: e.link,
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeDir {
			h.Name += "/"
		}
		if e.typ != tar.TypeReg {
			if err := tw.WriteHeader(h); err != nil {
				return fmt.Errorf("write %s: %w", p, err)
			}
			continue
		}
		if err := copyFile(tw, h, e.src); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return tw.Close()
}

func copyFile(tw *tar.Writer, h *tar.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h.Size = fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return err
	}
	if n != h.Size {
		return fmt.Errorf("%s changed while it was copied (%d bytes, then %d)", src, h.Size, n)
	}
	return nil
}
