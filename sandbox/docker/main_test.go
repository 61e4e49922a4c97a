package docker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestMain makes the test binary a relay when the driver runs it as one
// in a container, as the node's main does, and builds the Go conformance
// guest once.
func TestMain(m *testing.M) {
	MaybeRelay()
	dir, err := os.MkdirTemp("", "andromeda-docker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEnv.dir = dir
	testEnv.guest = filepath.Join(dir, "guest-exec", "guest")
	testEnv.guestErr = sandboxtest.GoBuild(goGuestPkg, testEnv.guest, []string{"CGO_ENABLED=0"})
	if testEnv.guestErr == nil {
		testEnv.guestErr = os.Chmod(filepath.Dir(testEnv.guest), 0o755)
	}
	code := m.Run()
	removeTestImages()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goGuestPkg is the import path of the exec conformance guest, the process
// driver's: a Go worker serving the suite's operations.
const goGuestPkg = "github.com/andromeda-runner/andromeda/sandbox/process/testdata/guests/go"

var testEnv struct {
	dir      string
	guest    string // the static guest binary
	guestErr error
}

// testNode is the node id of the tests' drivers: their containers are
// labelled with it, apart from a real node's.
const testNode = "andromeda-docker-test"

// testConfig is the configuration of the tests' drivers.
func testConfig() Config {
	return Config{
		Node:   testNode,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// newDriver returns a driver closed when t ends, skipping t (failing it
// under ANDROMEDA_CI_STRICT=1) when no engine answers.
func newDriver(t testing.TB, cfg Config) *Driver {
	t.Helper()
	d := New(cfg)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	cli, err := d.client()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx, pingOptions)
	}
	sandboxtest.Require(t, err == nil, fmt.Sprintf("no docker engine: %v", err))
	return d
}

// removeTestImages removes the self-test image when these tests imported
// it (it carries their node's label).
func removeTestImages() {
	cli, err := New(testConfig()).client()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	img, err := cli.ImageInspect(ctx, selfTestRef)
	if err == nil && img.Config != nil && img.Config.Labels[LabelNode] == testNode {
		_, _ = cli.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{Force: true})
	}
}

// guestImage returns the image of the exec conformance guest: its static
// binary at /bin/guest, the image's command.
func guestImage(t testing.TB, d *Driver) dockerimg.Image {
	t.Helper()
	cli, err := d.client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img, err := dockerimg.Exec(ctx, cli, "guest", goGuestPkg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
