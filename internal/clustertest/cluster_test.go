// Package clustertest runs nodes of a cluster as separate hosts: each
// node a container of an image holding only the static node binary, on a
// private Docker network, with its own data dir, driven only through its
// API. ANDROMEDA_SOAK=1 runs it at soak size.
package clustertest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/internal/dockerimg"
)

// The cluster's timing: the defaults. A lost_after shorter than NATS's
// RAFT election timeout (4 to 9 s) would have the streams the lost node
// led still electing when the claims are made.
const (
	heartbeat = 2 * time.Second
	lostAfter = 10 * time.Second
)

// host is one node of the cluster: a container on the test's network.
type host struct {
	name, id string
	addr     string // its API, host:port on the network
	token    string
	api      *api.Client
}

// cluster is the test's network and its hosts.
type cluster struct {
	t     *testing.T
	cli   *client.Client
	net   string // network id
	img   string
	hosts []*host
}

// newCluster makes a private network and three containers of the node
// image on it, named n1..n3 there, routed into one cluster, and starts
// them side by side.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	cli := dockerimg.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := dockerimg.Exec(ctx, cli, "andromeda", "github.com/andromeda-runner/andromeda/cmd/andromeda")
	if err != nil {
		t.Fatalf("node image: %v", err)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	prefix := "andromeda-ct-" + hex.EncodeToString(suffix)
	labels := map[string]string{"andromeda.test": "clustertest"}
	nw, err := cli.NetworkCreate(ctx, prefix, client.NetworkCreateOptions{Driver: "bridge", Labels: labels})
	if err != nil {
		t.Fatalf("network: %v", err)
	}
	c := &cluster{t: t, cli: cli, net: nw.ID, img: img.Ref}
	t.Cleanup(func() {
		for _, h := range c.hosts {
			if dir := os.Getenv("ANDROMEDA_TEST_LOGS"); dir != "" { // where to keep the nodes' whole logs
				os.WriteFile(filepath.Join(dir, h.name+".log"), []byte(c.logs(h)), 0o644)
			}
			if t.Failed() {
				t.Logf("--- log of %s (last 60 lines):\n%s", h.name, c.tail(h, 60))
			}
			cli.ContainerRemove(context.Background(), h.id, client.ContainerRemoveOptions{Force: true})
		}
		cli.NetworkRemove(context.Background(), nw.ID, client.NetworkRemoveOptions{})
	})
	config := fmt.Sprintf("listen: 0.0.0.0:7070\ndata: /data\ndocker: {enabled: false}\nlog: {format: json, level: info}\ncluster: {heartbeat: %s, lost_after: %s}\n", heartbeat, lostAfter)
	routes := "n1:6222,n2:6222,n3:6222"
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("n%d", i)
		created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: prefix + "-" + name,
			Config: &container.Config{
				Image:  img.Ref,
				Cmd:    []string{"/bin/andromeda", "serve", "--config", "/etc/andromeda.yaml", "--name", name, "--cluster", "ct", "--cluster-listen", "0.0.0.0:6222", "--routes", routes},
				Labels: labels,
			},
			HostConfig:       &container.HostConfig{NetworkMode: container.NetworkMode(prefix)},
			NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{prefix: {Aliases: []string{name}}}},
		})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		h := &host{name: name, id: created.ID}
		c.hosts = append(c.hosts, h)
		if _, err := cli.CopyToContainer(ctx, h.id, client.CopyToContainerOptions{DestinationPath: "/etc", Content: tarOf(t, "andromeda.yaml", config)}); err != nil {
			t.Fatalf("config of %s: %v", name, err)
		}
	}
	var wg sync.WaitGroup
	for _, h := range c.hosts {
		wg.Go(func() { c.start(h) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return c
}

// tarOf is a tar stream of one file.
func tarOf(t *testing.T, name, content string) *bytes.Buffer {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	return &b
}

// tokenLine is serve's line with the operator token.
var tokenLine = regexp.MustCompile(`operator token\s+(and_[0-9a-f]+)`)

// start starts h's container and waits until its API is ready (60 s).
func (c *cluster) start(h *host) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := c.cli.ContainerStart(ctx, h.id, client.ContainerStartOptions{}); err != nil {
		c.t.Errorf("start %s: %v", h.name, err)
		return
	}
	ins, err := c.cli.ContainerInspect(ctx, h.id, client.ContainerInspectOptions{})
	if err != nil {
		c.t.Errorf("inspect %s: %v", h.name, err)
		return
	}
	for _, ep := range ins.Container.NetworkSettings.Networks {
		h.addr = ep.IPAddress.String() + ":7070"
	}
	for {
		if m := tokenLine.FindStringSubmatch(c.logs(h)); m != nil {
			h.token, h.api = m[1], api.NewClient(h.addr, m[1])
			break
		}
		if ctx.Err() != nil {
			c.t.Errorf("%s printed no operator token within 90 s:\n%s", h.name, c.tail(h, 40))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := h.api.WaitReady(ctx); err != nil {
		c.t.Errorf("%s not ready: %v\n%s", h.name, err, c.tail(h, 40))
	}
}

// logs is everything h's container printed.
func (c *cluster) logs(h *host) string {
	r, err := c.cli.ContainerLogs(context.Background(), h.id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer r.Close()
	var out bytes.Buffer
	stdcopy.StdCopy(&out, &out, r)
	return out.String()
}

// tail is the last n lines of h's log.
func (c *cluster) tail(h *host, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(c.logs(h)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// kill SIGKILLs h's container.
func (c *cluster) kill(h *host) {
	if _, err := c.cli.ContainerKill(context.Background(), h.id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		c.t.Fatalf("kill %s: %v", h.name, err)
	}
}

// cut takes h off the network (its routes go; the test cannot reach it
// either), and heal puts it back under its name.
func (c *cluster) cut(h *host) {
	if _, err := c.cli.NetworkDisconnect(context.Background(), c.net, client.NetworkDisconnectOptions{Container: h.id, Force: true}); err != nil {
		c.t.Fatalf("cut %s off: %v", h.name, err)
	}
}

func (c *cluster) heal(h *host) {
	_, err := c.cli.NetworkConnect(context.Background(), c.net, client.NetworkConnectOptions{Container: h.id,
		EndpointConfig: &network.EndpointSettings{Aliases: []string{h.name}}})
	if err != nil {
		c.t.Fatalf("reconnect %s: %v", h.name, err)
	}
	ins, err := c.cli.ContainerInspect(context.Background(), h.id, client.ContainerInspectOptions{})
	if err != nil {
		c.t.Fatalf("inspect %s: %v", h.name, err)
	}
	for _, ep := range ins.Container.NetworkSettings.Networks {
		h.addr = ep.IPAddress.String() + ":7070"
	}
	h.api = api.NewClient(h.addr, h.token)
}

// health is each node's health as h sees it.
func health(h *host) map[string]string {
	ns, err := h.api.Nodes(context.Background())
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	out := map[string]string{}
	for _, n := range ns {
		out[n.Name] = n.Health
	}
	return out
}

// waitHealth waits until h sees want.
func (c *cluster) waitHealth(h *host, want map[string]string, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := health(h)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s sees %v after %v, want %v", h.name, got, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDriver waits until h sees driver among the drivers of every node
// of the cluster: a node whose driver still tests itself is passed over
// by placement, so a submission to it would be placed elsewhere.
func (c *cluster) waitDriver(h *host, driver string, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		nodes, err := h.api.Nodes(context.Background())
		ready := err == nil && len(nodes) == len(c.hosts)
		for _, n := range nodes {
			ready = ready && slices.Contains(n.Drivers, driver)
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s does not see driver %s on every node after %v: %+v, %v", h.name, driver, within, nodes, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The answer reactor's triggers: a tick every second, or a webhook.
const (
	tickTriggers = "triggers:\n  - {kind: cron, every: 1s}\n  - {kind: manual}\nresources: {memory: 1Mi, timeout: 5s, concurrency: 2}\n"
	hookTriggers = "triggers:\n  - {kind: http, path: /hooks/ct, auth: none}\nresources: {memory: 1Mi, timeout: 5s, concurrency: 16}\n"
)

// answerArchive is a service named name of the smallest reactor (the
// bench's answer.wasm: it answers 200, recorded as a noop where nothing
// waits for an answer) with triggers.
func answerArchive(t *testing.T, wasm []byte, name, triggers string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: answer.wasm}\nmode: server\n" +
		triggers + "capabilities: {network: none}\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "answer.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Pack(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ticks are the cron runs of service as h reads them: tick time → node.
func ticks(t *testing.T, h *host, service string) (map[time.Time]string, error) {
	runs, err := h.api.Runs(context.Background(), service, 1000)
	if err != nil {
		return nil, err
	}
	out := map[time.Time]string{}
	for _, r := range runs {
		if r.Trigger.Kind != "cron" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, r.Trigger.At)
		if err != nil {
			t.Errorf("%s: run %s: tick time %q: %v", service, r.ID, r.Trigger.At, err)
			continue
		}
		if other, ok := out[at]; ok {
			t.Errorf("%s: tick %s ran twice: on %s and on %s", service, r.Trigger.At, other, r.Node)
		}
		out[at] = r.Node
	}
	return out, nil
}

// window is a time a service may miss ticks in: from a node's loss to
// the first tick of its services elsewhere.
type window struct{ from, to time.Time }

func (w window) String() string {
	return w.from.Format("15:04:05.000") + "–" + w.to.Format("15:04:05.000")
}

// checkGaps fails t when a service missed a tick outside the windows.
func checkGaps(t *testing.T, service string, got map[time.Time]string, windows []window) {
	var at []time.Time
	for k := range got {
		at = append(at, k)
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	for i := 1; i < len(at); i++ {
		gap := at[i].Sub(at[i-1])
		if gap <= 1500*time.Millisecond {
			continue
		}
		if !slices.ContainsFunc(windows, func(w window) bool {
			return !at[i-1].Before(w.from.Add(-2*time.Second)) && !at[i].After(w.to.Add(2*time.Second))
		}) {
			t.Errorf("%s: ticks missed between %s and %s (%v), outside every failover window %v",
				service, at[i-1].Format("15:04:05.000"), at[i].Format("15:04:05.000"), gap, windows)
		}
	}
}
