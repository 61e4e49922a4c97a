package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// The tests below run testdata/volume, a real wasm reactor that writes,
// reads, fills and links files in its volumes as its message says, and a
// Python service doing the same on the process driver.

var (
	volumeOnce sync.Once
	volumeWasm string
	volumeErr  error
)

// volumeService writes a service directory: the volume guest (wasm) or
// its Python twin (process), with the manifest's name, version, mode and
// volumes as given.
func volumeService(t *testing.T, driver, name, version, mode, volumes string) string {
	t.Helper()
	dir := t.TempDir()
	runtime := "{driver: wasm, language: go, entry: main.wasm}"
	switch driver {
	case "wasm":
		_, err := exec.LookPath("go")
		sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the volume guest")
		volumeOnce.Do(func() {
			var tmp string
			if tmp, volumeErr = os.MkdirTemp("", "andromeda-volume-"); volumeErr != nil {
				return
			}
			volumeWasm = filepath.Join(tmp, "main.wasm")
			volumeErr = gobuild.Wasm(context.Background(), filepath.Join("testdata", "volume"), volumeWasm, gobuild.Reactor)
		})
		if volumeErr != nil {
			t.Fatal(volumeErr)
		}
		copyFile(t, volumeWasm, filepath.Join(dir, "main.wasm"))
	case "python":
		runtime = "{driver: process, language: python, entry: main.py}"
		if err := os.WriteFile(filepath.Join(dir, "main.py"), []byte(volumePython), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := fmt.Sprintf("name: %s\nversion: %s\nruntime: %s\nmode: %s\nvolumes: %s\n", name, version, runtime, mode, volumes)
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// volumePython is the volume guest in Python: the same operations and
// answers as testdata/volume.
const volumePython = `import os

def handle(input):
    r = input.get("message") or {}
    op, path = r.get("op"), r.get("path")
    try:
        if op == "write":
            with open(path, "w") as f:
                f.write(r["text"])
            return {"noop": "wrote %d" % len(r["text"])}
        if op == "read":
            with open(path) as f:
                return {"noop": "read:" + f.read()}
        if op == "fill":
            done = 0
            with open(path, "wb") as f:
                while done < r["bytes"]:
                    n = min(4096, r["bytes"] - done)
                    f.write(b"x" * n)
                    done += n
            return {"noop": "filled %d" % done}
        if op == "link":
            os.symlink(r["target"], path)
            return {"noop": "linked"}
    except Exception as e:
        return {"noop": "error:" + str(e)}
    return {"noop": "error:unknown op"}
`

// volumeFire fires service with the operation op and returns the run.
func volumeFire(t *testing.T, n *testNode, service, op string) api.Run {
	t.Helper()
	r, err := n.op.Fire(context.Background(), service, json.RawMessage(op))
	if err != nil {
		t.Fatalf("fire %s %s: %v", service, op, err)
	}
	return r
}

func wantNoop(t *testing.T, r api.Run, prefix string) {
	t.Helper()
	if r.Outcome != "noop" || !strings.HasPrefix(r.Noop, prefix) {
		t.Fatalf("run = %s %q %q, want noop starting %q", r.Outcome, r.Noop, r.Error, prefix)
	}
}

// TestWasmVolumes: a wasm service's volume keeps its files across runs
// and versions, is its own (another service's volume of the same path is
// another directory), is held to its size while the guest writes, lets no
// link lead out, moves files in and out through the API, and goes with the
// service.
func TestWasmVolumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	const vols = "[{name: out, path: /out, size: 64Ki}]"
	if _, err := n.op.Submit(ctx, pack(t, volumeService(t, "wasm", "keeper", "1.0.0", "server", vols))); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Submit(ctx, pack(t, volumeService(t, "wasm", "stranger", "1.0.0", "command", vols))); err != nil {
		t.Fatal(err)
	}
	wantNoop(t, volumeFire(t, n, "keeper", `{"op": "write", "path": "/out/a.txt", "text": "hello"}`), "wrote 5")
	wantNoop(t, volumeFire(t, n, "keeper", `{"op": "read", "path": "/out/a.txt"}`), "read:hello")
	// Never shared: the other service's /out is its own, empty.
	wantNoop(t, volumeFire(t, n, "stranger", `{"op": "read", "path": "/out/a.txt"}`), "error:")

	// A new version keeps the volume.
	if _, err := n.op.Submit(ctx, pack(t, volumeService(t, "wasm", "keeper", "1.0.1", "command", vols))); err != nil {
		t.Fatal(err)
	}
	wantNoop(t, volumeFire(t, n, "keeper", `{"op": "read", "path": "/out/a.txt"}`), "read:hello")

	// Files out and in.
	var got bytes.Buffer
	if _, err := n.op.GetFile(ctx, "keeper", "/out/a.txt", &got); err != nil || got.String() != "hello" {
		t.Fatalf("GetFile = %q, %v", got.String(), err)
	}
	if fi, err := n.op.PutFile(ctx, "keeper", "/out/in/b.txt", strings.NewReader("from outside"), -1); err != nil || fi.Size != 12 || fi.Type != "file" {
		t.Fatalf("PutFile = %+v, %v", fi, err)
	}
	wantNoop(t, volumeFire(t, n, "keeper", `{"op": "read", "path": "/out/in/b.txt"}`), "read:from outside")
	l, err := n.op.ListFiles(ctx, "keeper", "/out")
	if err != nil || len(l.Entries) != 2 || l.Entries[0].Name != "a.txt" || l.Entries[1].Type != "dir" {
		t.Fatalf("ListFiles = %+v, %v", l, err)
	}

	// The size holds while the guest writes: the write past it fails, and
	// the volume holds no more than its size.
	r := volumeFire(t, n, "keeper", `{"op": "fill", "path": "/out/big", "bytes": 200000}`)
	wantNoop(t, r, "filled ")
	if !strings.Contains(r.Noop, ":") {
		t.Fatalf("fill past the size succeeded: %q", r.Noop)
	}
	dir := filepath.Join(n.cfg.Data, "volumes", "keeper", "out")
	if used, err := sandbox.VolumeUsage(dir); err != nil || used > 64<<10 {
		t.Fatalf("volume holds %d bytes (%v), above its size 64Ki", used, err)
	}
	vl, err := n.op.Volumes(ctx, "keeper")
	if err != nil || len(vl) != 1 || vl[0].Name != "out" || vl[0].Size != 64<<10 || vl[0].Used <= 0 || vl[0].Used > 64<<10 {
		t.Fatalf("Volumes = %+v, %v", vl, err)
	}
	// An upload takes at most the free space.
	if _, err := n.op.PutFile(ctx, "keeper", "/out/c", bytes.NewReader(make([]byte, 64<<10)), 64<<10); status(err) != http.StatusRequestEntityTooLarge || !strings.Contains(err.Error(), "volume out") {
		t.Fatalf("PutFile over the free space = %v", err)
	}
	if err := n.op.RemoveFile(ctx, "keeper", "/out/big"); err != nil {
		t.Fatal(err)
	}

	// No link leads out, neither for the guest nor for cp.
	secret := filepath.Join(n.cfg.Data, "secret")
	os.WriteFile(secret, []byte("node data"), 0o600)
	wantNoop(t, volumeFire(t, n, "keeper", `{"op": "link", "path": "/out/l", "target": "../../../secret"}`), "linked")
	wantNoop(t, volumeFire(t, n, "keeper", `{"op": "read", "path": "/out/l"}`), "error:")
	if _, err := n.op.GetFile(ctx, "keeper", "/out/l", &got); status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "leads out of volume out") {
		t.Fatalf("GetFile through a link out = %v", err)
	}
	for _, p := range []string{"/out/%2e%2e/%2e%2e/secret", "/etc/passwd", "/out/a.txt%00"} {
		req, _ := http.NewRequest(http.MethodGet, n.op.Base+"/v1/services/keeper/files"+p, nil)
		req.Header.Set("Authorization", "Bearer "+n.op.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET files%s = %d, want 400", p, resp.StatusCode)
		}
	}

	// A submitter reaches only its own services' volumes.
	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(n.Addr(), tok.Secret)
	if _, err := alice.GetFile(ctx, "keeper", "/out/a.txt", &got); status(err) != http.StatusNotFound {
		t.Fatalf("another's file = %v, want 404", err)
	}

	// The volume goes with the service.
	if err := n.op.Remove(ctx, "keeper"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("volume after rm: %v", err)
	}
}

// TestVolumesRefused: a volume path that escapes or hides what the sandbox
// needs is a manifest error naming the field, and volumes above the
// policy's max_volume_size are refused with the rule; neither changes
// anything.
func TestVolumesRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	for _, tt := range []struct{ vols, want string }{
		{"[{name: out, path: /out/../etc, size: 1Mi}]", "volumes[0].path: must be clean"},
		{"[{name: out, path: out, size: 1Mi}]", "volumes[0].path: must be absolute"},
		{"[{name: out, path: /usr/lib/x, size: 1Mi}]", "volumes[0].path: must not be at or inside /usr"},
		{"[{name: out, path: /.andromeda-relay, size: 1Mi}]", "volumes[0].path: must not be at or inside /.andromeda-relay"},
	} {
		_, err := n.op.Submit(ctx, pack(t, volumeService(t, "python", "keeper", "1.0.0", "command", tt.vols)))
		var ae *api.Error
		if status(err) != http.StatusBadRequest || !errors.As(err, &ae) || !strings.Contains(strings.Join(ae.Problems, "\n"), tt.want) {
			t.Errorf("submit %s = %v, want 400 with %q", tt.vols, err, tt.want)
		}
	}
	_, err := n.op.Submit(ctx, pack(t, volumeService(t, "python", "keeper", "1.0.0", "command", "[{name: out, path: /out, size: 300Mi}]")))
	if status(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error()+fmt.Sprint(err.(*api.Error).Problems), "max_volume_size") {
		t.Fatalf("oversized volume = %v", err)
	}
	if list, err := n.op.Services(ctx); err != nil || len(list) != 0 {
		t.Fatalf("services after refusals = %+v, %v", list, err)
	}
	if _, err := os.Stat(filepath.Join(n.cfg.Data, "volumes", "keeper")); !os.IsNotExist(err) {
		t.Fatalf("a refused service left its volume: %v", err)
	}
}

// TestProcessVolumes: a Python service's volume is a read-write mount at
// its path, kept across runs and versions; a run that leaves it over its
// size ends as an error naming the volume and the size, further runs are
// refused until it is under, and a file removed through the API lets them
// run again.
func TestProcessVolumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := startNode(t)
	var enabled bool
	var why string
	for _, d := range n.Node.Node(ctx).Drivers {
		if d.Name == "process" {
			enabled, why = d.Enabled, d.Reason
		}
	}
	sandboxtest.Require(t, enabled, "the process driver is disabled on this host: "+why)
	const vols = "[{name: out, path: /out, size: 64Ki}, {name: data, path: /var/data, size: 16Ki}]"
	if _, err := n.op.Submit(ctx, pack(t, volumeService(t, "python", "pykeeper", "1.0.0", "server", vols))); err != nil {
		t.Fatal(err)
	}
	wantNoop(t, volumeFire(t, n, "pykeeper", `{"op": "write", "path": "/out/a.txt", "text": "hello"}`), "wrote 5")
	wantNoop(t, volumeFire(t, n, "pykeeper", `{"op": "write", "path": "/var/data/b.txt", "text": "data"}`), "wrote 4")
	if _, err := n.op.Submit(ctx, pack(t, volumeService(t, "python", "pykeeper", "1.1.0", "command", vols))); err != nil {
		t.Fatal(err)
	}
	wantNoop(t, volumeFire(t, n, "pykeeper", `{"op": "read", "path": "/out/a.txt"}`), "read:hello")
	wantNoop(t, volumeFire(t, n, "pykeeper", `{"op": "read", "path": "/var/data/b.txt"}`), "read:data")
	// An upload is the worker's to change.
	if _, err := n.op.PutFile(ctx, "pykeeper", "/out/up.txt", strings.NewReader("in"), 2); err != nil {
		t.Fatal(err)
	}
	wantNoop(t, volumeFire(t, n, "pykeeper", `{"op": "write", "path": "/out/up.txt", "text": "changed"}`), "wrote 7")

	// A link out resolves inside the worker's own file system, never the
	// node's, and the API does not follow it.
	wantNoop(t, volumeFire(t, n, "pykeeper", `{"op": "link", "path": "/out/l", "target": "../../../../../etc/hostname"}`), "linked")
	var got bytes.Buffer
	if _, err := n.op.GetFile(ctx, "pykeeper", "/out/l", &got); status(err) != http.StatusBadRequest {
		t.Fatalf("GetFile through a link out = %v", err)
	}

	// Over the size: the run is an error naming the volume and its size.
	r := volumeFire(t, n, "pykeeper", `{"op": "fill", "path": "/out/big", "bytes": 100000}`)
	if r.Outcome != "error" || !strings.Contains(r.Error, "volume out (/out)") || !strings.Contains(r.Error, "above its size 64Ki") {
		t.Fatalf("run over the size = %s %q", r.Outcome, r.Error)
	}
	r = volumeFire(t, n, "pykeeper", `{"op": "read", "path": "/out/a.txt"}`)
	if r.Outcome != "error" || !strings.Contains(r.Error, "runs are refused") {
		t.Fatalf("run while over = %s %q", r.Outcome, r.Error)
	}
	if err := n.op.RemoveFile(ctx, "pykeeper", "/out/big"); err != nil {
		t.Fatal(err)
	}
	wantNoop(t, volumeFire(t, n, "pykeeper", `{"op": "read", "path": "/out/a.txt"}`), "read:hello")
}
