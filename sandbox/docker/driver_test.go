package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestSelfTest runs the self-test against the engine: it passes, reports
// the engine's details and leaves no container behind.
func TestSelfTest(t *testing.T) {
	d := newDriver(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := d.SelfTest(ctx)
	if err != nil {
		t.Fatalf("SelfTest() = %v", err)
	}
	if st.Transport != TransportRelay {
		t.Errorf("SelfTest().Transport = %q (%s), want relay: the test binary calls MaybeRelay", st.Transport, st.TransportWhy)
	}
	if st.Version == "" || st.APIVersion == "" || st.StorageDriver == "" || !strings.HasPrefix(st.Image, "sha256:") {
		t.Errorf("SelfTest() = %+v, want the engine's version, API version, storage driver and the image's ID", st)
	}
	if err := d.Test(ctx); err != nil {
		t.Fatalf("Test() = %v", err)
	}
	o := d.Offer()
	if o.Driver != "docker" || o.Languages[AnyLanguage] == "" || !o.Isolation[LayerMemory] || o.Isolation[LayerSeccomp] != st.Seccomp {
		t.Errorf("Offer() = %+v", o)
	}
	if left := containers(t, d, LabelRole+"="+RoleSelfTest); len(left) > 0 {
		t.Errorf("self-test containers left behind: %v", left)
	}
	t.Logf("%+v", st)
}

// TestSelfTestDeadEngine: an engine that does not answer fails Test with
// a reason naming the address, and the offer says why.
func TestSelfTestDeadEngine(t *testing.T) {
	for _, host := range []string{"unix://" + t.TempDir() + "/docker.sock", "tcp://127.0.0.1:1"} {
		cfg := testConfig()
		cfg.Host = host
		d := New(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := d.Test(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), host) {
			t.Errorf("Test() with host %s = %v, want an error saying the engine at that address is unreachable", host, err)
		}
		if notes := strings.Join(d.Offer().Notes, "\n"); !strings.Contains(notes, "disabled by the self-test") {
			t.Errorf("Offer().Notes = %s, want the self-test's reason", notes)
		}
		d.Close()
	}
	cfg := testConfig()
	cfg.Host = "tcp://127.0.0.1:1"
	cfg.Transport = TransportRelay
	if _, err := New(cfg).relay(); err == nil || !strings.Contains(err.Error(), "not local") {
		t.Errorf("relay() with a tcp engine = %v, want the relay refused: the engine is not local", err)
	}
}

// TestConfigValidate: bad fields are named with their rule.
func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Host: "http://x"}, "host"},
		{Config{Host: "tcp://x:1", TLSCA: "ca.pem"}, "set all three"},
		{Config{Images: map[string]string{"ruby": "x"}}, `images["ruby"]: unknown language`},
		{Config{User: "0:0"}, "must not be root"},
		{Config{User: "nobody"}, "numeric"},
		{Config{Scratch: -1}, "scratch"},
	} {
		c.cfg.Logger = testConfig().Logger
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.cfg, err, c.want)
		}
		if err := New(c.cfg).Test(context.Background()); err == nil {
			t.Errorf("Test() with %+v = nil, want the config's error", c.cfg)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: Validate() = %v", err)
	}
}

// TestReap: Reap removes the node's containers that no deployment of the
// driver owns (another instance's: a crashed node's), and keeps its own
// and other nodes'.
func TestReap(t *testing.T) {
	// A node of its own: Reap must not touch what other tests of this
	// package run at the same time.
	cfg := testConfig()
	cfg.Node = fmt.Sprintf("%s-reap-%d", testNode, time.Now().UnixNano())
	d := newDriver(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Test(ctx); err != nil {
		t.Fatal(err)
	}
	img := d.self.Image
	crashed := New(cfg)
	otherCfg := cfg
	otherCfg.Node = cfg.Node + "-other"
	other := New(otherCfg)
	create := func(of *Driver, service string) string {
		t.Helper()
		cli, err := of.client()
		if err != nil {
			t.Fatal(err)
		}
		cs := containerSpec{name: of.newName(service), image: img, argv: []string{"/none"}, labels: of.labels(RoleWorker, service, "1", ""), limits: of.limits(sandbox.Limits{})}
		if _, err := cli.ContainerCreate(ctx, of.createOptions(cs)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.ContainerRemove(context.Background(), cs.name, client.ContainerRemoveOptions{Force: true}) })
		return cs.name
	}
	own := create(d, "reap-own")
	left := create(crashed, "reap-left")
	kept := create(other, "reap-other")
	removed, err := d.Reap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{left}) {
		t.Errorf("Reap() removed %v, want [%s]", removed, left)
	}
	now := containers(t, d, "")
	if !slices.Contains(now, own) || slices.Contains(now, left) {
		t.Errorf("containers of the node after Reap: %v, want %s kept and %s gone", now, own, left)
	}
	if got := containers(t, other, ""); !slices.Contains(got, kept) {
		t.Errorf("containers of the other node after Reap: %v, want %s kept", got, kept)
	}
}

// containers lists the names of d's node's containers, with label (k=v)
// too when not empty.
func containers(t testing.TB, d *Driver, label string) []string {
	t.Helper()
	cli, err := d.client()
	if err != nil {
		t.Fatal(err)
	}
	f := make(client.Filters).Add("label", LabelNode+"="+d.cfg.Node)
	if label != "" {
		f.Add("label", label)
	}
	list, err := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list.Items {
		names = append(names, strings.TrimPrefix(c.Names[0], "/"))
	}
	return names
}
