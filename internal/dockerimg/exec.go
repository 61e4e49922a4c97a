package dockerimg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// mountPoints are the empty directories every image of this package has:
// /tmp (a tmpfs in the docker driver's containers) and the mount points of
// a service's files and of the runtime shim.
var mountPoints = []string{"/service", "/runtime"}

// skeleton returns a root file system with /tmp (mode 1777) and the
// mount points, and nothing else.
func skeleton() *rootfs {
	fs := newRootfs()
	fs.dir("/tmp", 0o1777)
	for _, d := range mountPoints {
		fs.dir(d, 0o755)
	}
	return fs
}

// validName is what Exec accepts as a binary's name: one file name.
var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

// Exec returns an image holding only the static Go binary built from the
// package pkg (an import path of this module, or a relative path such as
// ./cmd/x, resolved in the current directory, which must be inside the
// module) at /bin/<name>, its command, plus empty /tmp, /service and
// /runtime directories. The binary is built with CGO_ENABLED=0,
// GOOS=linux, the host's GOARCH, -trimpath and -buildvcs=false, so the same source gives
// the same binary and so the same tag: a second call costs a cached go
// build and an inspect.
func Exec(ctx context.Context, cli *client.Client, name, pkg string) (Image, error) {
	if !validName.MatchString(name) {
		return Image{}, fmt.Errorf("exec image: name %q: must be a file name of letters, digits, '.', '_' and '-', not starting with '.' or '-'", name)
	}
	if pkg == "" {
		return Image{}, fmt.Errorf("exec image %s: pkg is empty: it must be the Go package to build", name)
	}
	wd, _ := os.Getwd() // a relative pkg is another package elsewhere
	key := "exec\x00" + name + "\x00" + pkg + "\x00" + wd
	if img, ok := remembered(ctx, cli, key); ok {
		return img, nil
	}
	dir, err := os.MkdirTemp("", "dockerimg-exec-")
	if err != nil {
		return Image{}, fmt.Errorf("exec image %s: %w", name, err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, name)
	progressf("exec: go build %s", pkg)
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH}
	if err := sandboxtest.GoBuild(pkg, bin, env, "-trimpath", "-buildvcs=false"); err != nil {
		return Image{}, fmt.Errorf("exec image %s: %w", name, err)
	}
	fs := skeleton()
	fs.file("/bin/"+name, bin, 0o755)
	img, err := importRootfs(ctx, cli, "exec", fs, []string{
		"ENV " + defaultPath,
		fmt.Sprintf(`CMD ["/bin/%s"]`, name),
	})
	if err != nil {
		return Image{}, fmt.Errorf("exec image %s: %w", name, err)
	}
	remember(key, img.Ref)
	return img, nil
}

// Empty returns the runtime image of exec archive services: an empty root
// with only /tmp, /service and /runtime, whose binary the service's own
// directory supplies. It has no command; a container of it names one.
func Empty(ctx context.Context, cli *client.Client) (Image, error) {
	return importRootfs(ctx, cli, "empty", skeleton(), []string{"ENV " + defaultPath})
}
