package archive

import (
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"strings"
)

// A File is one regular file, directory or symlink of a tree held
// somewhere other than a directory on disk (a git commit, for one), for
// PackFiles.
type File struct {
	// Path is slash-separated and relative to the tree's root.
	Path string
	// Mode is fs.ModeDir for a directory, fs.ModeSymlink for a symlink, and
	// a regular file's permission bits otherwise (only the exec bits count).
	Mode fs.FileMode
	// Size is a regular file's length in bytes.
	Size int64
	// Open returns a regular file's content, Size bytes; PackFiles closes
	// it. It is called once, in path order, only after every cap held.
	Open func() (io.ReadCloser, error)
	// Target is a symlink's target, as stored.
	Target string
}

// PackFiles writes the tar.gz PackTo would write for a directory holding
// files, and returns its Info: the same bytes, so the same digest. Names are
// skipped as PackTo skips them (.git, .DS_Store, editor backups, MetaDir at
// the root, and everything below a skipped directory), paths must be clean
// (no ., .. or empty elements, no trailing slash), symlinks must stay
// inside the tree, and files must not repeat a path.
//
// Unlike PackTo, it applies lim as Unpack would, before any content is
// read: entries, path length and depth, one file's size and the total size
// (lim.MaxCompressed and lim.MaxRatio concern archives and do not apply).
// Every rule broken is an *Error naming the entry.
func PackFiles(w io.Writer, files []File, lim Limits) (Info, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		return Info{}, err
	}
	t := newTree()
	open := map[string]func() (io.ReadCloser, error){}
	var total int64
	for _, f := range files {
		// Skip rules read the path as given, so it must be the path it
		// packs as: x/../.andromeda/y is not skipped as below x but would
		// pack as .andromeda/y.
		if c := path.Clean(f.Path); c != f.Path && f.Path != "" {
			return Info{}, refuse(f.Path, "path is not clean (%s once cleaned)", c)
		}
		if skipped(f.Path) {
			continue
		}
		p, rule := cleanPath(f.Path, "path", lim)
		if rule == "" && p == "." {
			rule = "path is the root"
		}
		if rule != "" {
			return Info{}, refuse(f.Path, "%s", rule)
		}
		n := &node{}
		switch {
		case f.Mode.IsDir():
			n.kind = kindDir
		case f.Mode&fs.ModeSymlink != 0:
			if rule := checkTarget(f.Target, lim); rule != "" {
				return Info{}, refuse(f.Path, "%s", rule)
			}
			n.kind, n.target = kindLink, f.Target
		case f.Mode.IsRegular():
			if f.Size < 0 || f.Open == nil {
				return Info{}, fmt.Errorf("archive: pack %q: a regular file needs a size ≥ 0 and Open", f.Path)
			}
			if f.Size > lim.MaxFileSize {
				return Info{}, tooLarge(f.Path, "file larger than %d bytes", lim.MaxFileSize)
			}
			if total += f.Size; total > lim.MaxSize {
				return Info{}, tooLarge(f.Path, "files total more than %d bytes", lim.MaxSize)
			}
			n.kind, n.size, n.exec = kindFile, f.Size, f.Mode&0o111 != 0
			open[p] = f.Open
		default:
			return Info{}, refuse(f.Path, "file type %v is not supported", f.Mode.Type())
		}
		if _, _, err := t.add(p, f.Path, n, lim.MaxEntries); err != nil {
			return Info{}, err
		}
	}
	if err := t.checkLinks(); err != nil {
		return Info{}, err
	}
	err = writeTar(w, "files", t, func(p string, n *node, w io.Writer, h hash.Hash) error {
		rc, err := open[p]()
		if err != nil {
			return fmt.Errorf("archive: pack %q: %w", p, err)
		}
		defer rc.Close()
		h.Reset()
		// One byte more than the size, to notice content longer than said.
		c, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(rc, n.size))
		if err == nil && c == n.size {
			var extra [1]byte
			if k, _ := rc.Read(extra[:]); k > 0 {
				c++
			}
		}
		if err != nil {
			return fmt.Errorf("archive: pack %q: %w", p, err)
		}
		if c != n.size {
			return fmt.Errorf("archive: pack %q: content is not the %d bytes its size says", p, n.size)
		}
		h.Sum(n.sum[:0])
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	return t.info(), nil
}

// skipped reports whether PackTo would leave p out: an ignored name at any
// depth, or MetaDir at the root.
func skipped(p string) bool {
	first := true
	for el := range strings.SplitSeq(p, "/") {
		if el == "" || el == "." {
			continue
		}
		if ignored(el) || first && el == MetaDir {
			return true
		}
		first = false
	}
	return false
}
