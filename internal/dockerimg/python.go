package dockerimg

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"
)

// The Debian root file system Python is made of: debootstrap's minimal
// variant of this suite, from this mirror, with python3 added.
const (
	pythonSuite  = "bookworm"
	pythonMirror = "http://deb.debian.org/debian"
)

// pythonArgs are debootstrap's arguments before the target directory.
var pythonArgs = []string{"--variant=minbase", "--include=python3", pythonSuite}

// ErrNoDebootstrap is returned by Python when it must build the root file
// system and debootstrap (Debian package debootstrap) is not installed.
var ErrNoDebootstrap = errors.New("debootstrap is not installed (Debian package debootstrap)")

// ErrNotRoot is returned by Python when it must build the root file
// system and the process is not root, which debootstrap needs.
var ErrNotRoot = errors.New("debootstrap needs root to build a root file system")

// Python returns an image of a Debian root file system, the minimal
// variant made by debootstrap with python3 added: python3 with its
// standard library, coreutils (so `sleep infinity` keeps a container of it
// running, as an operator's existing container would) and a shell, at
// their usual paths. Its command is python3.
//
// Building it takes minutes and downloads from the Debian mirror, so it
// is kept twice: the image by its tag (a hash of the recipe: suite,
// variant, packages, mirror, architecture) on the engine, and its tar
// under CacheDir, which a fresh engine imports. Delete that tar and the
// image to make a new one (for newer Debian packages). Only one process
// builds at a time; others wait for its result.
func Python(ctx context.Context, cli *client.Client) (Image, error) {
	changes := []string{"ENV " + defaultPath, `CMD ["python3"]`}
	h := sha256.New()
	hashRecipe(h, "python", changes)
	fmt.Fprintf(h, "debootstrap\x00%s\x00%s\x00%s\x00", strings.Join(pythonArgs, "\x00"), pythonMirror, runtime.GOARCH)
	r := recipe{kind: "python", tag: contentTag(h.Sum(nil)), changes: changes}
	if img, err := lookup(ctx, cli, r.ref()); err != nil || img.ID != "" {
		if err != nil {
			return Image{}, fmt.Errorf("python image: %w", err)
		}
		return img, nil
	}
	dir, err := CacheDir()
	if err != nil {
		return Image{}, fmt.Errorf("python image: %w", err)
	}
	tarPath := filepath.Join(dir, "python-"+r.tag+".tar")
	if err := ensurePythonTar(ctx, tarPath); err != nil {
		return Image{}, fmt.Errorf("python image: %w", err)
	}
	img, err := importTar(ctx, cli, r, func(w io.Writer) error {
		f, err := os.Open(tarPath)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	})
	if err != nil {
		return Image{}, fmt.Errorf("python image: %w", err)
	}
	return img, nil
}

// ensurePythonTar builds the root file system tar at tarPath unless it is
// there, holding the lock of such builds.
func ensurePythonTar(ctx context.Context, tarPath string) error {
	unlock, err := lockKind(ctx, "python-rootfs")
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(tarPath); err == nil {
		progressf("python: found the root file system %s", tarPath)
		return nil
	}
	deboot, err := exec.LookPath("debootstrap")
	if err != nil {
		// root's PATH has /usr/sbin, another user's may not.
		deboot = "/usr/sbin/debootstrap"
		if _, serr := os.Stat(deboot); serr != nil {
			return ErrNoDebootstrap
		}
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	cache := filepath.Dir(tarPath)
	// Under the cache directory, not the temporary one: debootstrap runs
	// programs in its target, which a noexec /tmp would refuse.
	root, err := os.MkdirTemp(cache, "python-rootfs-")
	if err != nil {
		return err
	}
	defer func() {
		if uerr := unmountUnder(root); uerr != nil {
			progressf("python: left %s in place: %v", root, uerr)
			return
		}
		os.RemoveAll(root)
	}()
	start := time.Now()
	args := append(slices.Clone(pythonArgs), root, pythonMirror)
	progressf("python: %s %s", deboot, strings.Join(args, " "))
	var tail tailBuffer
	cmd := exec.CommandContext(ctx, deboot, args...)
	cmd.Stdout = io.MultiWriter(Progress, &tail)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(root, "debootstrap", "debootstrap.log"))
		return fmt.Errorf("debootstrap %s: %w\n%s\n%s", strings.Join(args, " "), err, tail.Bytes(), lastBytes(log, 4096))
	}
	progressf("python: debootstrap took %s", time.Since(start).Round(time.Second))
	if err := unmountUnder(root); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(cache, "python-*.tar.partial")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = dirTar(tmp, root)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the root file system tar: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), tarPath); err != nil {
		return err
	}
	fi, _ := os.Stat(tarPath)
	progressf("python: wrote %s (%d MB) in %s", tarPath, fi.Size()>>20, time.Since(start).Round(time.Second))
	return nil
}

// skipInTar reports whether the root file system's entry name (slash
// separated, relative) stays out of the image: what is below the mount
// points the engine fills (/dev, /proc, /sys; the directories stay) and
// apt's downloaded packages and package lists.
func skipInTar(name string, dir bool) bool {
	switch {
	case strings.HasPrefix(name, "dev/"), strings.HasPrefix(name, "proc/"), strings.HasPrefix(name, "sys/"):
		return true
	case strings.HasPrefix(name, "var/cache/apt/archives/"):
		return strings.HasSuffix(name, ".deb")
	case strings.HasPrefix(name, "var/lib/apt/lists/"):
		return !dir && name != "var/lib/apt/lists/lock"
	}
	return false
}

// dirTar writes the tree under root as a tar to w, with the tree's
// owners, modes, times, symbolic links and hard links; sockets and what
// skipInTar names are left out.
func dirTar(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		if skipInTar(name, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		var link string
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		h.Name, h.Uname, h.Gname, h.Format = name, "", "", tar.FormatPAX
		if fi.IsDir() {
			h.Name += "/"
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				seen[key] = name
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = lastBytes(append(t.b, p...), 4096)
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte { return bytes.TrimSpace(t.b) }

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
