package bus_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/internal/testutil"
)

// freeAddrs are n local addresses free a moment ago, outside the
// ephemeral range (testutil.FreeAddr).
func freeAddrs(t *testing.T, n int) []string {
	var out []string
	for len(out) < n {
		if a := testutil.FreeAddr(t); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// TestCluster routes three embedded servers into one cluster: each Open
// returns once the cluster's JetStream has a leader, a bucket replicated
// on all three is written through one node and read through another, and
// what one node stores survives that node's server going away. A server
// of another cluster name, or with wrong route credentials, is refused:
// its Open fails saying why.
func TestCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addrs := freeAddrs(t, 3)
	open := func(name string, c bus.Cluster) (*bus.Bus, error) {
		b, err := bus.Open(ctx, bus.Config{Dir: t.TempDir(), Name: name, Cluster: c})
		if err == nil {
			t.Cleanup(func() { b.Close() })
		}
		return b, err
	}
	c := bus.Cluster{Name: "andromeda-test", Routes: addrs, User: "route", Password: "route-secret", Wait: 60 * time.Second}
	buses := make([]*bus.Bus, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	began := time.Now()
	for i := range 3 {
		wg.Go(func() {
			ci := c
			ci.Listen = addrs[i]
			buses[i], errs[i] = open("node-"+string(rune('a'+i)), ci)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("three servers formed a cluster in %v", time.Since(began).Round(time.Millisecond))

	kv, err := buses[0].JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cluster_test", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("from a")); err != nil {
		t.Fatal(err)
	}
	other, err := buses[2].JS.KeyValue(ctx, "cluster_test")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := other.Get(ctx, "k"); err != nil || string(e.Value()) != "from a" {
		t.Fatalf("read through c = %v, %v", e, err)
	}
	st, err := buses[1].JS.Stream(ctx, "KV_cluster_test")
	if err != nil {
		t.Fatal(err)
	}
	if info := st.CachedInfo(); info.Cluster == nil || len(info.Cluster.Replicas)+1 != 3 {
		t.Errorf("the bucket's stream is on %+v, want a leader and two replicas", info.Cluster)
	}
	// One server goes: the two left are a majority and go on.
	buses[0].Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := other.Put(wctx, "k", []byte("from c"))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("two of three servers did not take a write within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Refused: another cluster's name, wrong credentials.
	for _, tc := range []struct {
		name string
		c    bus.Cluster
	}{
		{"another name", bus.Cluster{Name: "elsewhere", User: c.User, Password: c.Password}},
		{"bad credentials", bus.Cluster{Name: c.Name, User: c.User, Password: "wrong"}},
	} {
		tc.c.Listen, tc.c.Routes, tc.c.Wait = freeAddrs(t, 1)[0], addrs[1:], 4*time.Second
		_, err := open("node-x", tc.c)
		if err == nil || !strings.Contains(err.Error(), "no leader") || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: Open = %v; want no leader, a route refused", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

// TestClusterConfigRefused: a cluster configuration that cannot work is
// refused by Open, naming the field, before anything starts.
func TestClusterConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		c    bus.Cluster
		url  string
		want string
	}{
		{bus.Cluster{Listen: "127.0.0.1:6222"}, "", "cluster.name: required"},
		{bus.Cluster{Name: "a b", Listen: "127.0.0.1:6222"}, "", "cluster.name"},
		{bus.Cluster{Name: "c", Listen: "6222"}, "", "cluster.listen"},
		{bus.Cluster{Name: "c", Listen: "127.0.0.1:6222", Routes: []string{"host"}}, "", "cluster.routes[0]"},
		{bus.Cluster{Name: "c", Listen: "127.0.0.1:6222", User: "u"}, "", "cluster.user and cluster.password"},
		{bus.Cluster{Name: "c", Listen: "127.0.0.1:6222"}, "nats://127.0.0.1:4222", "only the embedded server"},
	} {
		_, err := bus.Open(context.Background(), bus.Config{Dir: t.TempDir(), URL: tc.url, Cluster: tc.c})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Open = %v; want %q", tc.c, err, tc.want)
		}
	}
}
