//go:build linux

package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/docker"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// dockerGuest is the Go worker the image service runs: the conformance
// guest, which serves the runtime protocol through runtimes/go.
const dockerGuest = "github.com/andromeda-runner/andromeda/sandbox/process/testdata/guests/go"

// TestDockerKillReap is "a node killed with SIGKILL and restarted leaves no
// stray containers after its start": `andromeda serve` runs a docker image
// service in server mode with warm containers; the node is SIGKILLed (its
// containers live on, the engine owns them) and started again; after its
// start the only containers labelled with the node's id are the new
// deployment's, and the log says how many the node removed. A graceful
// stop then leaves none.
func TestDockerKillReap(t *testing.T) {
	cli := dockerimg.Client(t)
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build andromeda and the worker image")
	ctx := context.Background()
	img, err := dockerimg.Exec(ctx, cli, "guest", dockerGuest)
	if err != nil {
		t.Fatalf("build the worker image: %v", err)
	}

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "andromeda")
	if out, err := exec.Command("go", "build", "-o", bin, andromedaCmd).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(tmp, "data")
	n := &killNode{t: t, bin: bin, logPath: filepath.Join(tmp, "node.log"), config: filepath.Join(tmp, "andromeda.yaml")}
	n.addr = testutil.FreeAddr(t)
	cfg := fmt.Sprintf("listen: %s\ndata: %s\nlog: {format: json, level: info}\n", n.addr, data)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanup)
	if _, err := n.start(); err != nil {
		t.Fatalf("first start: %v", err)
	}
	token, err := node.OperatorToken(data)
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(n.addr, token)
	info, err := c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := info.NodeKey
	t.Cleanup(func() { removeLabelled(cli, id) })
	for _, d := range info.Drivers {
		if d.Name == "docker" {
			sandboxtest.Require(t, d.Enabled, "the docker driver is disabled on this host: "+d.Reason)
		}
	}

	dir := t.TempDir()
	manifest := "name: kill-docker\nversion: 1.0.0\nruntime: {driver: docker, image: '" + img.ID + "'}\nmode: server\n" +
		"triggers:\n  - {kind: manual}\nresources: {memory: 64Mi, timeout: 10s, pids: 32, concurrency: 2}\ncapabilities: {network: none}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := archive.Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Submit(ctx, b); err != nil || res.Service.Status != "deployed" {
		t.Fatalf("submit: %v (%s %s)", err, res.Service.Status, res.Service.StatusDetail)
	}
	fire := func(c *api.Client) {
		t.Helper()
		r, err := c.Fire(ctx, "kill-docker", json.RawMessage(`{}`))
		if err != nil {
			t.Fatalf("fire: %v", err)
		}
		if r.Outcome != "ok" && r.Outcome != "noop" {
			t.Fatalf("fire: outcome %s: %s", r.Outcome, r.Error)
		}
	}
	fire(c)
	before := labelled(t, cli, id)
	if len(before) == 0 {
		t.Fatalf("a deployed server-mode docker service has no containers labelled %s=%s: the check below would see nothing", docker.LabelNode, id)
	}

	n.kill()
	if left := labelled(t, cli, id); !slices.Equal(left, before) {
		t.Logf("containers after the kill: %v (before: %v)", left, before)
	}
	if len(labelled(t, cli, id)) == 0 {
		t.Fatalf("the killed node's containers are gone before its restart: nothing left to reap")
	}
	logFrom := n.logSize()
	took, err := n.start()
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	c = api.NewClient(n.addr, token)
	svc, err := c.Service(ctx, "kill-docker")
	if err != nil || svc.Status != "deployed" {
		t.Fatalf("service after the restart: %q (%s), %v", svc.Status, svc.StatusDetail, err)
	}
	after := labelled(t, cli, id)
	for _, name := range after {
		if slices.Contains(before, name) {
			t.Errorf("container %s of the killed node is still there after the restart (containers now: %v)", name, after)
		}
	}
	if len(after) == 0 {
		t.Errorf("the restored deployment has no containers")
	}
	if svc.Placement != nil {
		for _, name := range svc.Placement.Containers {
			if !slices.Contains(after, name) {
				t.Errorf("inspect places the service in %s, which is not a container of the node (%v)", name, after)
			}
		}
	}
	logs := n.logSince(logFrom)
	want := fmt.Sprintf("removed %d containers left by an earlier run of this node", len(before))
	if len(before) == 1 {
		want = "removed 1 container left by an earlier run of this node"
	}
	if !strings.Contains(logs, want) {
		t.Errorf("the restarted node's log does not say %q", want)
	}
	fire(c)
	t.Logf("containers before the kill %v; after the restart (ready in %s) %v", before, took.Round(time.Millisecond), after)

	if err := n.stop(30 * time.Second); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if left := labelled(t, cli, id); len(left) != 0 {
		t.Errorf("containers left after a graceful stop: %v", left)
	}
}

// labelled lists the names of the containers labelled with node id, sorted.
func labelled(t *testing.T, cli *client.Client, id string) []string {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", docker.LabelNode+"="+id),
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list.Items {
		names = append(names, strings.TrimPrefix(c.Names[0], "/"))
	}
	slices.Sort(names)
	return names
}

// removeLabelled removes whatever the test's node left, whatever happened.
func removeLabelled(cli *client.Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", docker.LabelNode+"="+id),
	})
	if err != nil {
		return
	}
	for _, c := range list.Items {
		cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
	}
}

// logSince returns the node's log from offset on.
func (n *killNode) logSince(offset int64) string {
	b, _ := os.ReadFile(n.logPath)
	if offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}
