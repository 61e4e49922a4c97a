package dockerimg

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/moby/client"
)

// ErrNoNode is returned by Node when the node interpreter is not on PATH.
var ErrNoNode = errors.New("the node interpreter is not on PATH")

// Node returns an image holding the host's node interpreter (the one PATH
// finds, symbolic links resolved) at its path, with the ELF interpreter
// and every library ldd names at theirs (symbolic links on the way, such
// as a merged /lib, are the same links in the image), plus /etc, /tmp,
// /service and /runtime, and no /etc/passwd or shell. Its PATH finds node,
// which is also its command. The tag is a hash of all those files, so an
// upgraded node makes a new image; a second call costs reading them.
func Node(ctx context.Context, cli *client.Client) (Image, error) {
	if img, ok := remembered(ctx, cli, "node"); ok {
		return img, nil
	}
	found, err := exec.LookPath("node")
	if err != nil {
		return Image{}, fmt.Errorf("node image: %w", ErrNoNode)
	}
	bin, err := filepath.EvalSymlinks(found)
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err != nil {
		return Image{}, fmt.Errorf("node image: resolve %s: %w", found, err)
	}
	libs, err := sharedLibraries(ctx, bin)
	if err != nil {
		return Image{}, fmt.Errorf("node image: %w", err)
	}
	fs := skeleton()
	fs.dir("/etc", 0o755)
	for _, p := range append([]string{bin}, libs...) {
		if err := fs.mirror(p); err != nil {
			return Image{}, fmt.Errorf("node image: %w", err)
		}
	}
	pathDirs := strings.Split(strings.TrimPrefix(defaultPath, "PATH="), ":")
	if !slices.Contains(pathDirs, filepath.Dir(bin)) || filepath.Base(bin) != "node" {
		fs.symlink("/usr/local/bin/node", bin)
	}
	img, err := importRootfs(ctx, cli, "node", fs, []string{"ENV " + defaultPath, `CMD ["node"]`})
	if err != nil {
		return Image{}, err
	}
	remember("node", img.Ref)
	return img, nil
}

// sharedLibraries returns the absolute paths of the ELF interpreter of
// the executable bin and of the libraries ldd says it loads, sorted. A
// library ldd cannot find is an error.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	var libs []string
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bin, err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("read the ELF interpreter of %s: %w", bin, err)
		}
		libs = append(libs, string(bytes.TrimRight(b, "\x00")))
	}
	f.Close()
	if len(libs) == 0 {
		return nil, nil // static: nothing to add
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ldd", bin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, bytes.TrimSpace(stderr.Bytes()))
	}
	for line := range strings.Lines(stdout.String()) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		lib := fields[0]
		if i := slices.Index(fields, "=>"); i >= 0 {
			if i+1 >= len(fields) || fields[i+1] == "not" {
				return nil, fmt.Errorf("ldd %s: library %s not found", bin, fields[0])
			}
			lib = fields[i+1]
		}
		if filepath.IsAbs(lib) {
			libs = append(libs, lib)
		}
	}
	slices.Sort(libs)
	return slices.Compact(libs), nil
}
