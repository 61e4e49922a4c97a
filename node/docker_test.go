package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/internal/dockerimg"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/docker"
)

// syncBuffer is a log destination safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggedNode is startNode with the node's log written to the
// returned buffer, as text.
func startLoggedNode(t *testing.T, mutate ...func(*node.Config)) (*testNode, *syncBuffer) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Name = "test"
	cfg.Cache = sharedCache(t)
	for _, f := range mutate {
		f(&cfg)
	}
	var logs syncBuffer
	n, err := node.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() { n.Close() })
	tok, err := node.OperatorToken(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{Node: n, cfg: cfg, op: api.NewClient(n.Addr(), tok)}, &logs
}

// offerDriver returns the offer's entry for driver name.
func offerDriver(t *testing.T, n *testNode, name string) api.OfferDriver {
	t.Helper()
	o, err := n.op.Offer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range o.Drivers {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("the offer lists no %s driver: %+v", name, o.Drivers)
	return api.OfferDriver{}
}

// nodeContainers lists the containers labelled with the node's id.
func nodeContainers(t *testing.T, cli *client.Client, id string) []string {
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
	return names
}

// TestDockerDriverOffer: a node whose engine answers offers the docker
// driver enabled, with the engine's version, and the runtime languages its
// config names images for.
func TestDockerDriverOffer(t *testing.T) {
	cli := dockerimg.Client(t)
	ctx := context.Background()
	empty, err := dockerimg.Empty(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, logs := startLoggedNode(t, func(c *node.Config) { c.Docker.Images.Exec = empty.ID })
	t.Logf("node start with the docker self-test: %s", time.Since(start).Round(time.Millisecond))
	ver, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := offerDriver(t, n, "docker")
	if !d.Enabled || d.Reason != "" {
		t.Fatalf("docker driver: enabled %v, reason %q\n%s", d.Enabled, d.Reason, logs)
	}
	if !strings.Contains(strings.Join(d.Notes, "\n"), "docker engine "+ver.Version) {
		t.Errorf("the offer's notes do not name the engine version %s: %q", ver.Version, d.Notes)
	}
	if _, ok := d.Languages["exec"]; !ok {
		t.Errorf("languages %v: want exec, whose runtime image the config names", d.Languages)
	}
	if _, ok := d.Languages["python"]; ok {
		t.Errorf("languages %v: python has no runtime image configured", d.Languages)
	}
	if !strings.Contains(logs.String(), "driver ready") || !strings.Contains(logs.String(), "driver=docker") {
		t.Errorf("the log does not say the docker driver is ready:\n%s", logs)
	}
	if left := nodeContainers(t, cli, n.NodeID()); len(left) != 0 {
		t.Errorf("the self-test left containers: %v", left)
	}
}

// TestDockerDeadSocket: an engine that does not answer disables the driver,
// with the reason in the offer and the log, and a docker service is refused
// with it; the node itself starts.
func TestDockerDeadSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nothing.sock")
	n, logs := startLoggedNode(t, func(c *node.Config) { c.Docker.Host = "unix://" + sock })
	d := offerDriver(t, n, "docker")
	if d.Enabled || !strings.Contains(d.Reason, sock) {
		t.Fatalf("docker driver: enabled %v, reason %q; want disabled naming %s", d.Enabled, d.Reason, sock)
	}
	if l := logs.String(); !strings.Contains(l, "driver disabled") || !strings.Contains(l, sock) {
		t.Errorf("the log does not say why the docker driver is disabled:\n%s", l)
	}
	info := n.Node.Node(context.Background())
	for _, dr := range info.Drivers {
		if dr.Name == "docker" && (dr.Enabled || dr.Reason != d.Reason) {
			t.Errorf("GET /v1/node: docker %+v, want disabled with %q", dr, d.Reason)
		}
	}
	dir := imageServiceDir(t, "dead-socket", "sha256:"+strings.Repeat("0", 64))
	_, err := n.op.Submit(context.Background(), pack(t, dir))
	if err == nil || !strings.Contains(err.Error(), "driver docker is disabled on this node") || !strings.Contains(err.Error(), sock) {
		t.Fatalf("submit = %v, want a refusal naming the disabled driver and why", err)
	}
}

// TestDockerDisabledByConfig: docker.enabled false leaves the driver out.
func TestDockerDisabledByConfig(t *testing.T) {
	n, logs := startLoggedNode(t, func(c *node.Config) { c.Docker.Enabled = false })
	o, err := n.op.Offer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range o.Drivers {
		if d.Name == "docker" {
			t.Errorf("the offer lists docker: %+v", d)
		}
	}
	if !strings.Contains(logs.String(), "docker.enabled is false") {
		t.Errorf("the log does not say why docker is left out:\n%s", logs)
	}
}

// imageServiceDir writes an image service of image with a manual trigger.
func imageServiceDir(t *testing.T, name, image string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: docker, image: '" + image + "'}\nmode: server\n" +
		"triggers:\n  - {kind: manual}\nresources: {memory: 64Mi, timeout: 10s, pids: 32, concurrency: 2}\ncapabilities: {network: none}\n" + strings.Join(extra, "")
	writeFile(t, filepath.Join(dir, "andromeda.yaml"), m)
	return dir
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDockerImageRefusals: an image service from a registry the policy does
// not list, or named by tag, is refused by admission with a reason naming
// the setting; one whose image the engine does not have (and may not pull)
// is refused at deploy. None of them leaves a service, a file or a
// container behind.
func TestDockerImageRefusals(t *testing.T) {
	cli := dockerimg.Client(t)
	ctx := context.Background()
	n, logs := startLoggedNode(t, func(c *node.Config) {
		c.Policy.Registries = map[string][]string{"docker": {"ghcr.io/org/"}}
	})
	if d := offerDriver(t, n, "docker"); !d.Enabled {
		t.Fatalf("docker driver disabled: %s\n%s", d.Reason, logs)
	}
	t.Cleanup(func() { removeNodeContainers(cli, n.NodeID()) })
	// registries.docker lists image sources, not a package registry of
	// the process driver, whose config refuses an unknown language.
	if d := offerDriver(t, n, "process"); strings.Contains(d.Reason, "registries") {
		t.Errorf("registries.docker disabled the process driver: %s", d.Reason)
	}
	pin := "@sha256:" + strings.Repeat("ab", 32)
	before := snapshotData(t, n)
	for _, tc := range []struct {
		name, image string
		status      int
		want        []string
	}{
		{"tag", "ghcr.io/org/app:1.0", 422, []string{"images: runtime.image ghcr.io/org/app:1.0 is not pinned"}},
		{"unlisted registry", "localhost:5000/app" + pin, 422, []string{"registries: image localhost:5000/app" + pin + " matches none of registries.docker (ghcr.io/org/)"}},
		{"docker hub", "node" + pin, 422, []string{"registries: image node" + pin + " (docker.io/library/node" + pin + ") matches none of registries.docker"}},
		{"missing image", "sha256:" + strings.Repeat("0", 64), 0, []string{"sha256:" + strings.Repeat("0", 64)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.op.Submit(ctx, pack(t, imageServiceDir(t, "img-svc", tc.image)))
			if err == nil {
				t.Fatalf("submit of %s admitted and deployed", tc.image)
			}
			t.Logf("refused: %v", err)
			if tc.status != 0 && status(err) != tc.status {
				t.Errorf("status %d, want %d: %v", status(err), tc.status, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("submit = %v\nwant it to say %q", err, w)
				}
			}
			if after := snapshotData(t, n); after != before {
				t.Errorf("the refusal changed the data dir or the services:\nbefore %s\nafter  %s", before, after)
			}
			if left := nodeContainers(t, cli, n.NodeID()); len(left) != 0 {
				t.Errorf("containers left by the refused deploy: %v", left)
			}
		})
	}
}

// execGuestImage is the worker image of the image services: the Go
// conformance guest (runtimes/go) on an empty root.
func execGuestImage(t *testing.T, cli *client.Client) dockerimg.Image {
	t.Helper()
	img, err := dockerimg.Exec(context.Background(), cli, "guest", "github.com/andromeda-runner/andromeda/sandbox/process/testdata/guests/go")
	if err != nil {
		t.Fatalf("build the worker image: %v", err)
	}
	return img
}

// TestDockerServices runs, on a node with the docker driver, an image
// service (its image pinned by ID) and an exec process service whose
// decision picked docker (prefer_drivers.docker lists exec, and the node
// names a runtime image for it): both fire, inspect shows where they run,
// and removing them leaves no container.
func TestDockerServices(t *testing.T) {
	cli := dockerimg.Client(t)
	ctx := context.Background()
	img := execGuestImage(t, cli)
	empty, err := dockerimg.Empty(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	n, logs := startLoggedNode(t, func(c *node.Config) {
		c.Docker.Images.Exec = empty.ID
		c.Policy.PreferDrivers = map[string][]string{"docker": {"exec"}}
	})
	if d := offerDriver(t, n, "docker"); !d.Enabled {
		t.Fatalf("docker driver disabled: %s\n%s", d.Reason, logs)
	}
	t.Cleanup(func() { removeNodeContainers(cli, n.NodeID()) })
	for _, tc := range []struct {
		name, dir string
	}{
		{"image", imageServiceDir(t, "docker-image", img.ID)},
		{"process on docker", guestServiceDir(t, "docker-exec", "exec")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := n.op.Submit(ctx, pack(t, tc.dir))
			if err != nil {
				t.Fatalf("submit: %v\n%s", err, logs)
			}
			name := res.Service.Name
			if res.Service.Decision.Driver != "docker" {
				t.Fatalf("decision driver %s, want docker: %+v", res.Service.Decision.Driver, res.Service.Decision.Reasons)
			}
			r, err := n.op.Fire(ctx, name, json.RawMessage(`{}`))
			if err != nil || r.Outcome == "error" || r.Outcome == "crashed" {
				t.Fatalf("fire: %+v, %v", r, err)
			}
			svc, err := n.op.Service(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			p := svc.Placement
			if p == nil || p.Kind != "new" || len(p.Containers) == 0 || p.Reason == "" {
				t.Fatalf("inspect placement = %+v, want new containers with a reason", p)
			}
			running := nodeContainers(t, cli, n.NodeID())
			for _, c := range p.Containers {
				if !slices.Contains(running, c) {
					t.Errorf("placement names container %s, not one of the node's (%v)", c, running)
				}
			}
			if err := n.op.Remove(ctx, name); err != nil {
				t.Fatalf("rm: %v", err)
			}
			for _, c := range p.Containers {
				if slices.Contains(nodeContainers(t, cli, n.NodeID()), c) {
					t.Errorf("container %s is left after rm", c)
				}
			}
		})
	}
}

// removeNodeContainers removes whatever a test's node left.
func removeNodeContainers(cli *client.Client, id string) {
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
