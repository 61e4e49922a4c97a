package archive

import (
	"archive/tar"
	"bufio"
	"compress/flate"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Unpack extracts the tar.gz read from r into the directory dst, which must
// not exist yet, and returns the tree's Info. It reads r to its end (nothing
// may follow the gzip stream) unless it stops at an error, and does not close
// it.
//
// The archive is extracted into a temporary directory next to dst (named
// ".<base of dst>.unpack-*"), which is renamed to dst only once every entry
// has been checked and written; on any error it is removed and dst is not
// created. If an empty directory appears at dst meanwhile, the rename
// replaces it. A process killed mid-extraction leaves the temporary
// directory behind; its name lets the caller sweep such leftovers at start.
//
// Rules, each broken one reported as an *Error naming the entry:
//   - names are relative, clean-able paths that stay inside dst: not empty,
//     not absolute, no ".." escaping, no backslash, NUL or control
//     character, no windows drive letter, valid UTF-8, within MaxPathLen and
//     MaxDepth; a name appears once; no entry lies under a symlink or a file;
//   - symlinks have relative targets that, following the archive's own
//     symlinks, resolve inside dst (they may dangle);
//   - a hard link must name a regular file earlier in the archive; it is
//     unpacked as a copy of that file, never as a link, so it can neither
//     reach outside dst nor alias a file across trees;
//   - device nodes, fifos, sparse files and other special entries are
//     refused; a pax global header (git archive writes one) is skipped;
//   - files are written 0755 if any exec bit is set and 0644 otherwise,
//     directories 0755: setuid, setgid, sticky and world-writable bits are
//     dropped; owners and times are not restored;
//   - the Limits, enforced while streaming;
//   - the input is one well-formed gzip stream (concatenated members are
//     allowed) holding one tar archive followed only by zero padding.
func Unpack(r io.Reader, dst string, lim Limits) (info Info, err error) {
	lim, err = lim.withDefaults()
	if err != nil {
		return Info{}, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return Info{}, fmt.Errorf("archive: unpack into %s: %w", dst, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("archive: unpack into %s: %w", dst, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".unpack-")
	if err != nil {
		return Info{}, fmt.Errorf("archive: unpack into %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(tmp); rerr != nil {
				err = errors.Join(err, fmt.Errorf("archive: remove %s: %w", tmp, rerr))
			}
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return Info{}, fmt.Errorf("archive: unpack into %s: %w", dst, err)
	}
	x := &extractor{lim: lim, root: root, t: newTree()}
	info, err = x.run(r)
	if err == nil {
		err = root.Chmod(".", 0o755)
	}
	if cerr := root.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Info{}, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return Info{}, fmt.Errorf("archive: unpack into %s: %w", dst, err)
	}
	return info, nil
}

// Inspect applies every rule Unpack applies to the tar.gz read from r and
// returns its Info, writing nothing. It does not close r.
func Inspect(r io.Reader, lim Limits) (Info, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		return Info{}, err
	}
	x := &extractor{lim: lim, t: newTree()}
	return x.run(r)
}

// extractor reads one archive into a tree and, if root is set, onto disk.
type extractor struct {
	lim     Limits
	root    *os.Root // nil: check only
	t       *tree
	m       meter
	globals int  // pax global headers seen
	sawRoot bool // "./" seen
}

func (x *extractor) run(r io.Reader) (Info, error) {
	x.m.lim = x.lim
	x.m.maxOut = x.lim.MaxSize + int64(x.lim.MaxEntries)*4096 + 1<<20
	br := bufio.NewReader(&inReader{m: &x.m, r: r})
	magic, err := br.Peek(2)
	if err != nil || magic[0] != 0x1f || magic[1] != 0x8b {
		if e := x.m.sourceErr(); e != nil {
			return Info{}, e
		}
		var ae *Error
		if errors.As(err, &ae) {
			return Info{}, err
		}
		return Info{}, malformed("", "not a gzip stream", nil)
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return Info{}, x.streamErr("", err)
	}
	zr.Multistream(false)
	out := &outReader{m: &x.m, r: &members{br: br, zr: zr}}
	tr := tar.NewReader(out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return Info{}, x.streamErr("", err)
		}
		if err := x.entry(tr, hdr); err != nil {
			return Info{}, err
		}
	}
	if err := x.tail(out); err != nil {
		return Info{}, err
	}
	if err := x.t.checkLinks(); err != nil {
		return Info{}, err
	}
	if x.root != nil {
		for _, p := range x.t.links {
			if err := x.root.Symlink(x.t.nodes[p].target, p); err != nil {
				return Info{}, fmt.Errorf("archive: unpack %q: %w", x.t.nodes[p].entry, err)
			}
		}
	}
	return x.t.info(), nil
}

// tail reads what follows the tar end-of-archive marker: zero padding only,
// then the end of the gzip stream, whose checksum is verified on the way.
func (x *extractor) tail(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return malformed("", "data after the end of the tar archive", nil)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return x.streamErr("", err)
		}
	}
}

// streamErr classifies an error from reading the stream while at entry.
func (x *extractor) streamErr(entry string, err error) error {
	if e := x.m.sourceErr(); e != nil {
		return e
	}
	var ae *Error
	if errors.As(err, &ae) {
		if ae.Entry == "" {
			ae.Entry = entry
		}
		return ae
	}
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return malformed(entry, "archive is truncated", nil)
	case errors.Is(err, gzip.ErrChecksum):
		return malformed(entry, "gzip checksum mismatch", nil)
	case errors.Is(err, gzip.ErrHeader):
		return malformed(entry, "invalid gzip header", nil)
	case errors.As(err, &corrupt):
		return malformed(entry, "corrupt gzip data", err)
	case errors.Is(err, tar.ErrHeader):
		return malformed(entry, "invalid tar header", nil)
	}
	return malformed(entry, "unreadable archive", err)
}

// entry checks one header and writes it.
func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	name := hdr.Name
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		if x.globals++; x.globals > 1 {
			return refuse(name, "more than one pax global header")
		}
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock:
		return refuse(name, "device nodes are not allowed")
	case tar.TypeFifo:
		return refuse(name, "fifos are not allowed")
	case tar.TypeGNUSparse:
		return refuse(name, "sparse files are not supported")
	default:
		return refuse(name, "entry type %q is not supported", hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return refuse(name, "sparse files are not supported")
		}
	}
	p, rule := cleanPath(name, "path", x.lim)
	if rule != "" {
		return refuse(name, "%s", rule)
	}
	if p == MetaDir || strings.HasPrefix(p, MetaDir+"/") {
		return refuse(name, "%s/ is reserved for attestations, which travel beside the archive", MetaDir)
	}
	if p == "." {
		if hdr.Typeflag != tar.TypeDir {
			return refuse(name, "path names the service directory itself")
		}
		if x.sawRoot {
			return refuse(name, "duplicate entry")
		}
		x.sawRoot = true
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		implied, isNew, err := x.t.add(p, name, &node{kind: kindDir}, x.lim.MaxEntries)
		if err != nil {
			return err
		}
		if isNew {
			implied = append(implied, p)
		}
		return x.mkdirs(name, implied)
	case tar.TypeSymlink:
		if rule := checkTarget(hdr.Linkname, x.lim); rule != "" {
			return refuse(name, "%s", rule)
		}
		implied, _, err := x.t.add(p, name, &node{kind: kindLink, target: hdr.Linkname}, x.lim.MaxEntries)
		if err != nil {
			return err
		}
		// The link itself is created once the whole archive is read and
		// every link checked, so nothing is ever written through one.
		return x.mkdirs(name, implied)
	case tar.TypeLink:
		return x.hardlink(name, p, hdr.Linkname)
	default:
		return x.file(tr, name, p, hdr)
	}
}

func (x *extractor) checkSize(name string, size int64) error {
	if size > x.lim.MaxFileSize {
		return tooLarge(name, "file larger than %d bytes", x.lim.MaxFileSize)
	}
	if x.m.size+size > x.lim.MaxSize {
		return tooLarge(name, "files total more than %d bytes", x.lim.MaxSize)
	}
	x.m.size += size
	return nil
}

func (x *extractor) file(tr *tar.Reader, name, p string, hdr *tar.Header) error {
	if err := x.checkSize(name, hdr.Size); err != nil {
		return err
	}
	n := &node{kind: kindFile, exec: hdr.Mode&0o111 != 0, size: hdr.Size}
	implied, _, err := x.t.add(p, name, n, x.lim.MaxEntries)
	if err != nil {
		return err
	}
	if err := x.mkdirs(name, implied); err != nil {
		return err
	}
	h := sha256.New()
	var w io.Writer = h
	var f *os.File
	if x.root != nil {
		if f, err = x.create(name, p, n.exec); err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(h, f)
	}
	if _, err := io.Copy(w, tr); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("archive: unpack %q: %w", name, err)
		}
		return x.streamErr(name, err)
	}
	h.Sum(n.sum[:0])
	if f != nil {
		if err := f.Close(); err != nil {
			return fmt.Errorf("archive: unpack %q: %w", name, err)
		}
	}
	return nil
}

// hardlink unpacks a hard link as a copy of its target, a regular file
// earlier in the archive.
func (x *extractor) hardlink(name, p, linkname string) error {
	tp, rule := cleanPath(linkname, "hard link target", x.lim)
	if rule != "" {
		return refuse(name, "%s", rule)
	}
	tn := x.t.nodes[tp]
	switch {
	case tn == nil || !tn.explicit:
		return refuse(name, "hard link target is not a file earlier in the archive")
	case tn.kind == kindDir:
		return refuse(name, "hard link target is a directory")
	case tn.kind == kindLink:
		return refuse(name, "hard link target is a symlink")
	}
	if err := x.checkSize(name, tn.size); err != nil {
		return err
	}
	n := &node{kind: kindFile, exec: tn.exec, size: tn.size, sum: tn.sum}
	implied, _, err := x.t.add(p, name, n, x.lim.MaxEntries)
	if err != nil {
		return err
	}
	if err := x.mkdirs(name, implied); err != nil {
		return err
	}
	if x.root == nil {
		return nil
	}
	src, err := x.root.Open(tp)
	if err != nil {
		return fmt.Errorf("archive: unpack %q: %w", name, err)
	}
	defer src.Close()
	f, err := x.create(name, p, n.exec)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(f, src); err != nil {
		return fmt.Errorf("archive: unpack %q: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("archive: unpack %q: %w", name, err)
	}
	return nil
}

// create makes a new regular file, never replacing or following anything.
func (x *extractor) create(name, p string, exec bool) (*os.File, error) {
	perm := fs.FileMode(0o644)
	if exec {
		perm = 0o755
	}
	f, err := x.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err == nil {
		err = f.Chmod(perm) // the umask may have cleared bits
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("archive: unpack %q: %w", name, err)
	}
	return f, nil
}

func (x *extractor) mkdirs(name string, dirs []string) error {
	if x.root == nil {
		return nil
	}
	for _, d := range dirs {
		err := x.root.Mkdir(d, 0o755)
		if err == nil {
			err = x.root.Chmod(d, 0o755)
		}
		if err != nil {
			return fmt.Errorf("archive: unpack %q: %w", name, err)
		}
	}
	return nil
}

// meter counts bytes in and out of the decompressor and enforces the
// compressed size, ratio and stream size caps.
type meter struct {
	lim    Limits
	maxOut int64 // decompressed tar stream: files, headers and padding
	in     int64 // compressed bytes read from the source
	out    int64 // decompressed bytes
	size   int64 // bytes of regular files so far
	srcErr error // the source's own read error, if any
}

// sourceErr returns the source reader's error, which is the transport's and
// not the archive's, so it is returned as is.
func (m *meter) sourceErr() error {
	if m.srcErr == nil {
		return nil
	}
	return fmt.Errorf("archive: read: %w", m.srcErr)
}

type inReader struct {
	m *meter
	r io.Reader
}

func (c *inReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.m.in += int64(n)
	if c.m.in > c.m.lim.MaxCompressed {
		return 0, tooLarge("", "archive larger than %d bytes compressed", c.m.lim.MaxCompressed)
	}
	if err != nil && err != io.EOF {
		c.m.srcErr = err
	}
	return n, err
}

// members reads concatenated gzip members, as gzip -d does, and refuses
// anything else after the first: gzip.Reader's own multistream mode reports
// a short tail as a truncation.
type members struct {
	br *bufio.Reader
	zr *gzip.Reader
}

func (g *members) Read(p []byte) (int, error) {
	for {
		n, err := g.zr.Read(p)
		if n > 0 && err == io.EOF {
			return n, nil // the next call reports the member's end
		}
		if err != io.EOF {
			return n, err
		}
		magic, err := g.br.Peek(2)
		switch {
		case err == io.EOF && len(magic) == 0:
			return 0, io.EOF
		case errors.As(err, new(*Error)):
			return 0, err
		case len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b:
			return 0, malformed("", "data after the gzip stream is not gzip", nil)
		}
		if err := g.zr.Reset(g.br); err != nil {
			return 0, err
		}
		g.zr.Multistream(false)
	}
}

type outReader struct {
	m *meter
	r io.Reader
}

func (c *outReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	m := c.m
	m.out += int64(n)
	if m.out > m.lim.RatioFloor && m.out/m.lim.MaxRatio > m.in {
		return 0, tooLarge("", "compression ratio above %d:1", m.lim.MaxRatio)
	}
	if m.out > m.maxOut {
		return 0, tooLarge("", "archive larger than %d bytes uncompressed", m.maxOut)
	}
	return n, err
}
