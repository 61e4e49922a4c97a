package dockerimg_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// python returns the Python image, skipping t (failing it under
// ANDROMEDA_CI_STRICT=1) when it is not cached and cannot be built here.
func python(t *testing.T, cli *client.Client) dockerimg.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	start := time.Now()
	img, err := dockerimg.Python(ctx, cli)
	sandboxtest.Require(t, !errors.Is(err, dockerimg.ErrNoDebootstrap) && !errors.Is(err, dockerimg.ErrNotRoot),
		"the Python image needs debootstrap (Debian package debootstrap), run as root, unless it is cached")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Python: %s in %s", img.Ref, time.Since(start).Round(time.Millisecond))
	return img
}

func TestPython(t *testing.T) {
	cli := dockerimg.Client(t)
	img := python(t, cli)
	checkImage(t, cli, img, "python")

	script := `import json, sys, asyncio, importlib.util, os
open('/tmp/x', 'w').write('ok')
print(json.dumps({"v": sys.version_info[0], "uid": os.getuid(), "tmp": open('/tmp/x').read()}))`
	code, out, errOut := run(t, cli, box{ref: img.Ref, user: "65534:65534"}, "python3", "-c", script)
	if want := `{"v": 3, "uid": 65534, "tmp": "ok"}`; code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("python3 -c: exit %d, stdout %q, stderr %q; want exit 0 and %s", code, out, errOut, want)
	}

	again, err := dockerimg.Python(context.Background(), cli)
	if err != nil {
		t.Fatal(err)
	}
	if again != img {
		t.Errorf("second Python = %+v, want the first %+v", again, img)
	}
	dir, err := dockerimg.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	tag := img.Ref[strings.LastIndex(img.Ref, ":")+1:]
	if _, err := os.Stat(filepath.Join(dir, "python-"+tag+".tar")); err != nil {
		t.Errorf("the root file system tar is not kept in the cache directory: %v", err)
	}
}

// TestPythonAsExistingContainer runs the Python image as an operator's
// long-running container: `sleep infinity` keeps it up until removed.
func TestPythonAsExistingContainer(t *testing.T) {
	cli := dockerimg.Client(t)
	img := python(t, cli)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: img.Ref, Cmd: []string{"sleep", "infinity"},
			Labels: map[string]string{"andromeda.test": "dockerimg"}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := cli.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container %s: %v", created.ID, err)
		}
	})
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	res, err := cli.ContainerInspect(ctx, created.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Container.State; st == nil || !st.Running {
		t.Fatalf("sleep infinity: state %+v, want running", st)
	}
}
