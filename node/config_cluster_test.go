package node_test

import (
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
)

// TestClusterConfigRefused: every bad cluster key is named with its rule,
// all in one error.
func TestClusterConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want []string
	}{
		{"cluster: {listen: '127.0.0.1:6222'}", []string{"cluster.name: required with cluster.listen or cluster.routes"}},
		{"cluster: {name: 'a b', listen: nowhere, routes: [x], user: u, replicas: 7, heartbeat: 10ms, lost_after: 20ms, labels: {'bad key': v}}", []string{
			"cluster.name: must be 1 to 63 of", "cluster.listen: must be host:port", "cluster.routes[0]: must be host:port",
			"cluster.user: cluster.user and cluster.password: both or neither", "cluster.replicas: must be from 1 to 5",
			"cluster.heartbeat: must be from 100ms to 1m", `cluster.labels: key "bad key"`,
		}},
		{"cluster: {heartbeat: 2s, lost_after: 5s}", []string{"cluster.lost_after: must be at least three heartbeats"}},
		{"cluster: {replicas: 3}", []string{"cluster.replicas: more than 1 needs cluster.name"}},
		{"nats: {url: 'nats://x:4222'}\ncluster: {name: c, listen: '127.0.0.1:6222'}", []string{"cluster.name: not with nats.url"}},
	} {
		_, err := node.ParseConfig([]byte(tc.doc), false)
		if err == nil {
			t.Errorf("%s: accepted", tc.doc)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.doc, err, w)
			}
		}
	}
	cfg, err := node.ParseConfig([]byte("cluster: {name: prod, listen: '0.0.0.0:6222', routes: ['10.0.0.1:6222', 'nats-route://10.0.0.2:6222'], labels: {zone: eu-1}}"), false)
	if err != nil || cfg.Cluster.Name != "prod" || len(cfg.Cluster.Routes) != 2 || cfg.Cluster.LostAfter.Std().Seconds() != 10 {
		t.Errorf("a good cluster config: %+v, %v", cfg.Cluster, err)
	}
}
