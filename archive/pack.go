package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// ignored reports whether Pack and DigestDir skip a file or directory by its
// base name, at any depth: version control metadata (.git, .hg, .svn),
// desktop litter (.DS_Store, Thumbs.db) and editor backups (names ending in
// "~", and ".*.swp").
func ignored(base string) bool {
	switch base {
	case ".git", ".hg", ".svn", ".DS_Store", "Thumbs.db":
		return true
	}
	return strings.HasSuffix(base, "~") ||
		strings.HasPrefix(base, ".") && strings.HasSuffix(base, ".swp")
}

// MetaDir is the directory at the root of a service directory that holds
// what is said about the service rather than the service itself (its
// attestations): Pack and DigestDir leave it out, so signing a service does
// not change the digest being signed, and Unpack refuses an archive that
// carries it.
const MetaDir = ".andromeda"

// packLimits are the only limits packing applies: the name rules. Size caps
// are the receiving node's to enforce.
var packLimits = Limits{MaxEntries: math.MaxInt, MaxPathLen: math.MaxInt, MaxDepth: math.MaxInt}

// Pack returns the deterministic tar.gz of dir; see PackTo.
func Pack(dir string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := PackTo(&buf, dir); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PackTo writes the tar.gz of dir to w and returns its Info. It does not
// close w. The same files always give the same bytes (for a given Go
// version's compress/flate):
//   - entries are sorted by path (byte order), directories listed before
//     their content and named with a trailing "/", the root not listed;
//   - owners are uid/gid 0 with no user or group names, every mtime is the
//     Unix epoch, files are 0755 if any exec bit is set and 0644 otherwise,
//     directories 0755;
//   - the gzip header carries no name and no mtime.
//
// Skipped at any depth: .git, .hg, .svn, .DS_Store, Thumbs.db, names ending
// in "~" and ".*.swp". Symlinks are stored as symlinks when their target is
// relative and resolves inside dir; an absolute or escaping target is an
// error naming the link. Hard-linked files are stored as regular files.
// Devices, sockets and fifos are refused, as is any name Unpack would refuse.
// No size limits apply; the receiving node enforces its own.
func PackTo(w io.Writer, dir string) (Info, error) {
	t, root, err := scan(dir)
	if err != nil {
		return Info{}, err
	}
	defer root.Close()
	err = writeTar(w, dir, t, func(p string, n *node, w io.Writer, h hash.Hash) error {
		return copyFile(root, p, n, w, h)
	})
	if err != nil {
		return Info{}, err
	}
	return t.info(), nil
}

// writeTar writes t as PackTo's deterministic tar.gz to w; content copies
// a regular file's bytes to w and sets its sum, and its errors are returned
// as they are. name is what the tree was packed from, for errors.
func writeTar(w io.Writer, name string, t *tree, content func(p string, n *node, w io.Writer, h hash.Hash) error) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("archive: pack %s: %w", name, err)
	}
	tw := tar.NewWriter(zw)
	h := sha256.New()
	for _, p := range sortedPaths(t) {
		n := t.nodes[p]
		hdr := &tar.Header{Name: p, ModTime: time.Unix(0, 0), Mode: 0o644}
		switch n.kind {
		case kindDir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, p+"/", 0o755
		case kindLink:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, n.target, 0o777
		case kindFile:
			hdr.Typeflag, hdr.Size = tar.TypeReg, n.size
			if n.exec {
				hdr.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archive: pack %q: %w", p, err)
		}
		if n.kind == kindFile {
			if err := content(p, n, tw, h); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("archive: pack %s: %w", name, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("archive: pack %s: %w", name, err)
	}
	return nil
}

// DigestDir returns the canonical digest of dir: the digest of PackTo's
// archive of it, computed without building the archive. The same files are
// skipped and the same errors reported as by PackTo.
func DigestDir(dir string) (string, error) {
	t, root, err := scan(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	h := sha256.New()
	for _, p := range sortedPaths(t) {
		if n := t.nodes[p]; n.kind == kindFile {
			if err := copyFile(root, p, n, io.Discard, h); err != nil {
				return "", err
			}
		}
	}
	return t.info().Digest, nil
}

// copyFile copies the regular file p (n.size bytes) to w and sets n.sum.
func copyFile(root *os.Root, p string, n *node, w io.Writer, h hash.Hash) error {
	f, err := root.Open(p)
	if err != nil {
		return fmt.Errorf("archive: pack %q: %w", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive: pack %q: %w", p, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != n.size {
		return fmt.Errorf("archive: pack %q: file changed while packing", p)
	}
	h.Reset()
	if _, err := io.CopyN(io.MultiWriter(w, h), f, n.size); err != nil {
		return fmt.Errorf("archive: pack %q: %w", p, err)
	}
	h.Sum(n.sum[:0])
	return nil
}

// scan walks dir into a tree (file sums not yet set) and opens it as a Root
// the caller closes.
func scan(dir string) (*tree, *os.Root, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("archive: pack %s: %w", dir, err)
	}
	t := newTree()
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("archive: pack %q: %w", p, err)
		}
		if p == "." {
			return nil
		}
		if ignored(d.Name()) || p == MetaDir {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if _, rule := cleanPath(p, "path", packLimits); rule != "" {
			return refuse(p, "%s", rule)
		}
		n := &node{}
		switch typ := d.Type(); {
		case typ.IsDir():
			n.kind = kindDir
		case typ.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("archive: pack %q: %w", p, err)
			}
			n.kind, n.size, n.exec = kindFile, fi.Size(), fi.Mode()&0o111 != 0
		case typ&fs.ModeSymlink != 0:
			target, err := root.Readlink(p)
			if err != nil {
				return fmt.Errorf("archive: pack %q: %w", p, err)
			}
			if rule := checkTarget(target, packLimits); rule != "" {
				return refuse(p, "%s", rule)
			}
			n.kind, n.target = kindLink, target
		case typ&fs.ModeDevice != 0:
			return refuse(p, "device files are not allowed")
		case typ&fs.ModeNamedPipe != 0:
			return refuse(p, "fifos are not allowed")
		case typ&fs.ModeSocket != 0:
			return refuse(p, "sockets are not allowed")
		default:
			return refuse(p, "file type %v is not supported", typ)
		}
		_, _, err = t.add(p, p, n, packLimits.MaxEntries)
		return err
	})
	if err == nil {
		err = t.checkLinks()
	}
	if err != nil {
		root.Close()
		return nil, nil, err
	}
	return t, root, nil
}

func sortedPaths(t *tree) []string {
	paths := make([]string, 0, len(t.nodes))
	for p := range t.nodes {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}
