package node

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/manifest"
)

// ClusterConfig makes the node one of several sharing a NATS JetStream
// cluster: their embedded servers routed into one (Name, Listen, Routes),
// or one external NATS cluster they all use (nats.url with Replicas). The
// node then writes its heartbeat and offer to the node registry, runs only
// the services placed on it, takes over the services of a node declared
// lost, and fires a cron tick only after claiming it in the cluster.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node; a route from a
	// server with another name is refused. Default "": the node is alone
	// (unless nats.url is set, see Replicas).
	Name string `json:"name" yaml:"name"`
	// Listen is the host:port the embedded server takes routes from the
	// other nodes on. Required with Name.
	Listen string `json:"listen" yaml:"listen"`
	// Routes are other nodes' cluster listen addresses (host:port); this
	// node's own may be among them, so one list serves every node.
	Routes []string `json:"routes" yaml:"routes"`
	// User and Password authenticate routes; every node has the same. Empty:
	// routes are not authenticated (a private network only).
	User     string `json:"user" yaml:"user"`
	Password string `json:"password" yaml:"password"`
	// Replicas is how many servers keep a copy of every stream and bucket
	// (RAFT-replicated), 1 to 5. Default 3 in a cluster, 1 alone. With
	// nats.url it is the replicas the node asks of the external cluster,
	// and a value above 1 makes the node clustered (registry, placement,
	// tick claims) as with Name.
	Replicas int `json:"replicas" yaml:"replicas"`
	// Heartbeat is how often the node writes its entry in the node
	// registry. Default 2s; from 100ms to 1m.
	Heartbeat manifest.Duration `json:"heartbeat" yaml:"heartbeat"`
	// LostAfter: a node whose heartbeat is older is declared lost and its
	// services are placed again elsewhere; the node itself stops firing
	// triggers when it could not store a heartbeat for that long. Default
	// 10s; at least three heartbeats.
	LostAfter manifest.Duration `json:"lost_after" yaml:"lost_after"`
	// Wait bounds how long the start waits for the cluster's JetStream to
	// have a leader (a majority of its servers up and routed). Default 60s.
	Wait manifest.Duration `json:"wait" yaml:"wait"`
	// Labels describe the node to placement (zone, disk, ...): a manifest's
	// placement.labels must all match. Keys and values: [A-Za-z0-9._-],
	// at most 63 characters. Default none.
	Labels map[string]string `json:"labels" yaml:"labels"`
}

// Defaults of ClusterConfig.
const (
	DefaultHeartbeat       = 2 * time.Second
	DefaultLostAfter       = 10 * time.Second
	DefaultClusterWait     = 60 * time.Second
	DefaultClusterReplicas = 3
)

// DefaultClusterConfig returns the documented defaults: alone.
func DefaultClusterConfig() ClusterConfig {
	return ClusterConfig{
		Heartbeat: configDuration(DefaultHeartbeat),
		LostAfter: configDuration(DefaultLostAfter),
		Wait:      configDuration(DefaultClusterWait),
	}
}

// configDuration is d as a config duration.
func configDuration(d time.Duration) manifest.Duration {
	m, err := manifest.ParseDuration(d.String())
	if err != nil {
		panic(err)
	}
	return m
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

// Validate reports every problem with its key; nats is the bus section,
// which a cluster of embedded servers excludes.
func (c ClusterConfig) Validate(nats NATSConfig) error {
	var errs []error
	bad := func(key, rule string) { errs = append(errs, fmt.Errorf("cluster.%s: %s", key, rule)) }
	if c.Name == "" {
		if c.Listen != "" || len(c.Routes) > 0 {
			bad("name", "required with cluster.listen or cluster.routes")
		}
	} else {
		if !labelRE.MatchString(c.Name) {
			bad("name", "must be 1 to 63 of A-Z a-z 0-9 . _ -")
		} else if strings.Contains(c.Name, ".") {
			bad("name", "must not contain a dot")
		}
		if nats.URL != "" {
			bad("name", "not with nats.url: an external NATS is clustered by its own configuration (set cluster.replicas)")
		}
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("listen", "must be host:port")
		}
	}
	for i, r := range c.Routes {
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(r, "nats-route://")); err != nil {
			bad(fmt.Sprintf("routes[%d]", i), "must be host:port")
		}
	}
	if (c.User == "") != (c.Password == "") {
		bad("user", "cluster.user and cluster.password: both or neither")
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		bad("replicas", "must be from 1 to 5")
	}
	if c.Replicas > 1 && c.Name == "" && nats.URL == "" {
		bad("replicas", "more than 1 needs cluster.name (or nats.url): a node alone keeps one copy")
	}
	hb, lost := c.Heartbeat.Std(), c.LostAfter.Std()
	if hb < 100*time.Millisecond || hb > time.Minute {
		bad("heartbeat", "must be from 100ms to 1m")
	}
	if lost < 3*hb {
		bad("lost_after", "must be at least three heartbeats")
	}
	if w := c.Wait.Std(); w < time.Second || w > time.Hour {
		bad("wait", "must be from 1s to 1h")
	}
	for k, v := range c.Labels {
		if !labelRE.MatchString(k) {
			bad("labels", fmt.Sprintf("key %q: must be 1 to 63 of A-Z a-z 0-9 . _ -", k))
		}
		if !labelRE.MatchString(v) {
			bad("labels."+k, "must be 1 to 63 of A-Z a-z 0-9 . _ -")
		}
	}
	return errors.Join(errs...)
}

// clustered reports whether the node shares its store with other nodes:
// a cluster of embedded servers, or an external NATS with more than one
// replica.
// sharesStore says other nodes may use this node's store (a cluster, or an
// external NATS): a run pending or an execution open in it is this node's
// only when it names this node.
func (c Config) sharesStore() bool { return c.Cluster.Name != "" || c.NATS.URL != "" }

func (c Config) clustered() bool {
	return c.Cluster.Name != "" || (c.NATS.URL != "" && c.Cluster.Replicas > 1)
}

// replicas is how many copies of each stream and bucket the node asks for.
func (c Config) replicas() int {
	switch {
	case c.Cluster.Replicas > 0:
		return c.Cluster.Replicas
	case c.Cluster.Name != "":
		return DefaultClusterReplicas
	}
	return 1
}

// busCluster is the bus's routing of the embedded server.
func (c ClusterConfig) busCluster() bus.Cluster {
	if c.Name == "" {
		return bus.Cluster{}
	}
	return bus.Cluster{Name: c.Name, Listen: c.Listen, Routes: c.Routes, User: c.User, Password: c.Password, Wait: c.Wait.Std()}
}

// storeTimeout bounds the store's opening and its registry listings: the
// store's default alone, and the cluster's wait in a cluster, where the
// streams' groups elect their leaders as the nodes start.
func (n *Node) storeTimeout() time.Duration {
	if n.cfg.clustered() {
		return n.cfg.Cluster.Wait.Std()
	}
	return 0
}
