package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// Files in and out of volumes (server.FileBackend). Every path is opened
// through an os.Root on the volume's directory, so neither a '..' nor a
// symbolic link a guest left in its volume reaches anything outside it.

var _ server.FileBackend = (*Node)(nil)

// Volumes implements server.FileBackend.
func (n *Node) Volumes(ctx context.Context, p server.Principal, service string) ([]api.Volume, error) {
	vols, err := n.serviceVolumes(ctx, p, service)
	if err != nil {
		return nil, err
	}
	return volumeInfo(vols), nil
}

// serviceVolumes are the volumes of a service p may see: the running
// version's, or the registered manifest's when it is not deployed.
func (n *Node) serviceVolumes(ctx context.Context, p server.Principal, service string) ([]sandbox.Volume, error) {
	rec, err := n.owned(ctx, p, service)
	if err != nil {
		return nil, err
	}
	if d := n.lookup(service); d != nil && d.rec.Digest == rec.Digest {
		return d.volumes, nil
	}
	m, err := manifest.Load(n.serviceDir(rec))
	if err != nil {
		return nil, server.Errorf(server.ErrConflict, "service %s is registered but its manifest cannot be read: %v", service, err)
	}
	return n.volumeSpecs(service, m), nil
}

// volumeFile is a guest path resolved to its volume.
type volumeFile struct {
	vol  sandbox.Volume
	root *os.Root // the volume's directory; closed by close
	rel  string   // the path inside the volume, "." for the volume itself
	path string   // the guest path, cleaned of a trailing '/'
}

func (f *volumeFile) close() { f.root.Close() }

// resolve finds the volume of guestPath and opens it.
func (n *Node) resolve(ctx context.Context, p server.Principal, service, guestPath string) (*volumeFile, error) {
	vols, err := n.serviceVolumes(ctx, p, service)
	if err != nil {
		return nil, err
	}
	clean := strings.TrimSuffix(guestPath, "/")
	if clean == "" {
		clean = "/"
	}
	if strings.IndexByte(clean, 0) >= 0 || !strings.HasPrefix(clean, "/") {
		return nil, server.Errorf(server.ErrInvalid, "path %q: must be an absolute guest path without NUL", guestPath)
	}
	for _, seg := range strings.Split(clean[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return nil, server.Errorf(server.ErrInvalid, "path %s: must not hold '..', '.' or empty segments: a file stays inside its volume", guestPath)
		}
	}
	for _, v := range vols {
		if clean != v.Path && !strings.HasPrefix(clean, v.Path+"/") {
			continue
		}
		if err := makeVolumes([]sandbox.Volume{v}); err != nil {
			return nil, err
		}
		root, err := os.OpenRoot(v.Dir)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(clean, v.Path), "/")
		if rel == "" {
			rel = "."
		}
		return &volumeFile{vol: v, root: root, rel: rel, path: clean}, nil
	}
	paths := make([]string, 0, len(vols))
	for _, v := range vols {
		paths = append(paths, v.Path)
	}
	if len(paths) == 0 {
		return nil, server.Errorf(server.ErrInvalid, "path %s: service %s has no volumes", guestPath, service)
	}
	return nil, server.Errorf(server.ErrInvalid, "path %s: not in a volume of service %s (%s)", guestPath, service, strings.Join(paths, ", "))
}

// fileError turns what an os.Root call said into an error kind: a path
// that leaves the volume is the caller's mistake, a missing one not found.
func (f *volumeFile) fileError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("path %s: no such file in volume %s: %w", f.path, f.vol.Name, store.ErrNotFound)
	case strings.Contains(err.Error(), "escapes from parent"):
		return server.Errorf(server.ErrInvalid, "path %s: a symbolic link in it leads out of volume %s: files are read and written only inside their volume", f.path, f.vol.Name)
	case errors.Is(err, syscall.ENOTDIR):
		return server.Errorf(server.ErrInvalid, "path %s: a part of it is a file, not a directory", f.path)
	case errors.Is(err, syscall.EISDIR):
		return server.Errorf(server.ErrConflict, "path %s: is a directory", f.path)
	}
	return fmt.Errorf("volume %s: %w", f.vol.Name, err)
}

// listLimit is the most entries a directory listing holds: the first by
// name. A guest can make a directory of millions of entries; its listing
// stays one bounded answer.
const listLimit = 10000

// OpenFile implements server.FileBackend. It serves regular files and
// directories only: opening a named pipe for reading waits for a writer,
// so a pipe a guest made would hold the request, its connection and a
// thread for good. The type is checked before the open, the open does not
// wait (O_NONBLOCK), and the type is checked again on what was opened, as
// the guest may swap the path in between.
func (n *Node) OpenFile(ctx context.Context, p server.Principal, service, guestPath string) (api.FileInfo, io.ReadCloser, *api.Listing, error) {
	f, err := n.resolve(ctx, p, service, guestPath)
	if err != nil {
		return api.FileInfo{}, nil, nil, err
	}
	defer f.close()
	st, err := f.root.Stat(f.rel) // follows links, but only inside the volume
	if err != nil {
		return api.FileInfo{}, nil, nil, f.fileError(err)
	}
	if err := f.servable(st); err != nil {
		return api.FileInfo{}, nil, nil, err
	}
	file, err := f.root.OpenFile(f.rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return api.FileInfo{}, nil, nil, f.fileError(err)
	}
	if st, err = file.Stat(); err == nil {
		err = f.servable(st)
	} else {
		err = f.fileError(err)
	}
	if err != nil {
		file.Close()
		return api.FileInfo{}, nil, nil, err
	}
	info := fileInfo(f.path, st)
	if !st.IsDir() {
		return info, file, nil, nil
	}
	defer file.Close()
	names, total, err := firstNames(file, listLimit)
	if err != nil {
		return api.FileInfo{}, nil, nil, f.fileError(err)
	}
	if total > len(names) {
		n.log.Warn("directory listing cut", logService, service, "path", f.path, "entries", total, "listed", len(names))
	}
	l := &api.Listing{Path: f.path, Entries: []api.FileInfo{}, Total: total, Truncated: total > len(names)}
	for _, name := range names {
		est, err := f.root.Lstat(path.Join(f.rel, name))
		if err != nil {
			continue // removed meanwhile
		}
		l.Entries = append(l.Entries, fileInfo(path.Join(f.path, name), est))
	}
	return info, nil, l, nil
}

// servable refuses what is neither a regular file nor a directory.
func (f *volumeFile) servable(st fs.FileInfo) error {
	if st.Mode().IsRegular() || st.IsDir() {
		return nil
	}
	kind := "a special file"
	switch m := st.Mode(); {
	case m&fs.ModeNamedPipe != 0:
		kind = "a named pipe"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	case m&fs.ModeCharDevice != 0:
		kind = "a character device"
	case m&fs.ModeDevice != 0:
		kind = "a device"
	}
	return server.Errorf(server.ErrInvalid, "path %s: is %s: only regular files and directories are served", f.path, kind)
}

// firstNames reads dir in batches and keeps its first limit names,
// sorted; total is how many it holds. Memory stays near limit whatever
// the directory's size.
func firstNames(dir *os.File, limit int) ([]string, int, error) {
	var names []string
	total := 0
	for {
		batch, err := dir.Readdirnames(1024)
		total += len(batch)
		names = append(names, batch...)
		if len(names) >= 2*limit {
			slices.Sort(names)
			names = names[:limit]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
	}
	slices.Sort(names)
	if len(names) > limit {
		names = names[:limit]
	}
	return names, total, nil
}

// WriteFile implements server.FileBackend: the body goes to a temporary
// file beside the target, renamed over it once complete, so a guest never
// reads half a file and a refused upload leaves nothing. The file may take
// the volume's free space, with what a file it replaces holds counted as
// free.
func (n *Node) WriteFile(ctx context.Context, p server.Principal, service, guestPath string, body io.Reader) (api.FileInfo, error) {
	f, err := n.resolve(ctx, p, service, guestPath)
	if err != nil {
		return api.FileInfo{}, err
	}
	defer f.close()
	if f.rel == "." {
		return api.FileInfo{}, server.Errorf(server.ErrInvalid, "path %s: is volume %s itself; name a file in it", f.path, f.vol.Name)
	}
	uid, gid, chown := volumeOwner(f.vol.Dir)
	dir := path.Dir(f.rel)
	if dir != "." {
		if err := f.root.MkdirAll(dir, 0o755); err != nil {
			return api.FileInfo{}, f.fileError(err)
		}
		if chown {
			for d := dir; d != "."; d = path.Dir(d) {
				f.root.Lchown(d, uid, gid)
			}
		}
	}
	used, err := sandbox.VolumeUsage(f.vol.Dir)
	if err != nil {
		return api.FileInfo{}, fmt.Errorf("volume %s: measure: %w", f.vol.Name, err)
	}
	free := f.vol.Size - used
	if old, err := f.root.Lstat(f.rel); err == nil {
		switch {
		case old.IsDir():
			return api.FileInfo{}, server.Errorf(server.ErrConflict, "path %s: is a directory", f.path)
		case old.Mode().IsRegular():
			free += sandbox.FileCharge(old.Size())
		default:
			free += sandbox.BlockSize
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return api.FileInfo{}, f.fileError(err)
	}
	limit := free / sandbox.BlockSize * sandbox.BlockSize // the largest file that fits
	if limit <= 0 {
		return api.FileInfo{}, server.Errorf(server.ErrTooLarge, "volume %s (%s) is full: it holds %s of its %s", f.vol.Name, f.vol.Path, sizeText(used), sizeText(f.vol.Size))
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	tmp := path.Join(dir, ".andromeda-upload-"+hex.EncodeToString(suffix[:]))
	out, err := f.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return api.FileInfo{}, f.fileError(err)
	}
	keep := false
	defer func() {
		if !keep {
			out.Close()
			f.root.Remove(tmp)
		}
	}()
	written, err := io.Copy(out, io.LimitReader(body, limit+1))
	switch {
	case err != nil:
		var tooLarge *server.Error
		if errors.As(err, &tooLarge) {
			return api.FileInfo{}, err
		}
		return api.FileInfo{}, fmt.Errorf("path %s: upload: %w", f.path, err)
	case written > limit:
		return api.FileInfo{}, server.Errorf(server.ErrTooLarge, "path %s: the file is larger than the free space of volume %s (%s free of %s)", f.path, f.vol.Name, sizeText(limit), sizeText(f.vol.Size))
	}
	if err := out.Close(); err != nil {
		return api.FileInfo{}, fmt.Errorf("path %s: %w", f.path, err)
	}
	if chown {
		f.root.Lchown(tmp, uid, gid)
	}
	if err := f.root.Rename(tmp, f.rel); err != nil {
		return api.FileInfo{}, f.fileError(err)
	}
	keep = true
	st, err := f.root.Lstat(f.rel)
	if err != nil {
		return api.FileInfo{}, f.fileError(err)
	}
	return fileInfo(f.path, st), nil
}

// RemoveFile implements server.FileBackend.
func (n *Node) RemoveFile(ctx context.Context, p server.Principal, service, guestPath string) error {
	f, err := n.resolve(ctx, p, service, guestPath)
	if err != nil {
		return err
	}
	defer f.close()
	if f.rel == "." {
		return server.Errorf(server.ErrInvalid, "path %s: is volume %s itself; remove the files in it", f.path, f.vol.Name)
	}
	if _, err := f.root.Lstat(f.rel); err != nil {
		return f.fileError(err)
	}
	return f.fileError(f.root.RemoveAll(f.rel))
}

// volumeOwner is the owner of a volume's directory, for what the node
// writes into it, when the node is root (a process driver's workers own
// their volumes and must be able to change what is uploaded).
func volumeOwner(dir string) (uid, gid int, ok bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	st, err := os.Stat(dir)
	if err != nil {
		return 0, 0, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(sys.Uid), int(sys.Gid), true
}

func fileInfo(guestPath string, st fs.FileInfo) api.FileInfo {
	t := "other"
	switch {
	case st.Mode().IsRegular():
		t = "file"
	case st.IsDir():
		t = "dir"
	case st.Mode()&fs.ModeSymlink != 0:
		t = "link"
	}
	size := st.Size()
	if t == "dir" {
		size = 0
	}
	return api.FileInfo{Path: guestPath, Name: path.Base(guestPath), Type: t, Size: size, Modified: st.ModTime().UTC()}
}
