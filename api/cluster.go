package api

import (
	"context"
	"strconv"
	"time"
)

// Node health in the node registry (ClusterNode.Health).
const (
	// NodeUp: the node's last heartbeat is younger than the cluster's
	// lost_after.
	NodeUp = "up"
	// NodeLost: the node stopped heartbeating (killed, cut off, its
	// machine gone); its services are placed again elsewhere.
	NodeLost = "lost"
	// NodeLeft: the node stopped cleanly and said so.
	NodeLeft = "left"
	// NodeDraining: the node was asked to drain (POST /v1/node/drain): it
	// still runs what it holds while the other nodes take each of its
	// services over, and takes nothing new over itself.
	NodeDraining = "draining"
)

// ClusterNode is one node of the node registry (GET /v1/nodes).
type ClusterNode struct {
	Name string `json:"name"`
	// Key is the node's public key (its receipts' signer).
	Key string `json:"key"`
	// API is the address the node's API listens on, as it sees it.
	API string `json:"api"`
	// Cluster and Route: the cluster's name and this node's route address
	// ("" for a node alone or on an external NATS).
	Cluster string            `json:"cluster,omitempty"`
	Route   string            `json:"route,omitempty"`
	Version string            `json:"version"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Drivers and Languages the node runs now (enabled, self-tested).
	Drivers   []string `json:"drivers"`
	Languages []string `json:"languages"`
	// Services is how many services the node runs.
	Services int `json:"services"`
	// ServicesMax is how many its policy lets it run (limits.services), 0
	// for no bound: placement passes over a node at its bound.
	ServicesMax int       `json:"services_max,omitempty"`
	Started     time.Time `json:"started"`
	// Beat is when the node's last heartbeat was stored (the store's clock).
	Beat time.Time `json:"beat"`
	// Health is up, draining, lost or left, judged by the node that
	// answers: a heartbeat older than LostAfter is lost.
	Health string `json:"health"`
	// DrainingSince is when the node began to drain.
	DrainingSince *time.Time `json:"draining_since,omitempty"`
	BeatAgeMs     float64    `json:"beat_age_ms"`
	// LostAfterMs is the cluster's lost_after as the answering node has it.
	LostAfterMs float64 `json:"lost_after_ms"`
	// Self marks the node that answered.
	Self bool `json:"self,omitempty"`
}

// Nodes lists the node registry: every node of the cluster with its
// health, as the answering node judges it.
func (c *Client) Nodes(ctx context.Context) ([]ClusterNode, error) {
	var ns []ClusterNode
	return ns, c.getJSON(ctx, "/v1/nodes", &ns)
}

// Drain asks the node the client talks to to hand its services over to
// the other nodes of its cluster (POST /v1/node/drain, operator): it
// answers at once with its registry entry, health draining; the services
// move over the next heartbeats (watch Nodes until it holds none).
func (c *Client) Drain(ctx context.Context) (ClusterNode, error) {
	var n ClusterNode
	return n, c.postJSON(ctx, "/v1/node/drain", nil, &n)
}

// Forwards lists the services this node forwarded to its peers, newest
// first, at most limit (0: the node's default, 100).
func (c *Client) Forwards(ctx context.Context, limit int) ([]Forward, error) {
	var fs []Forward
	path := "/v1/forwards"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	return fs, c.getJSON(ctx, path, &fs)
}

// ClusterStatus answers GET /v1/cluster: the nodes, and each stream of the
// store as JetStream replicates it.
type ClusterStatus struct {
	// Cluster is the cluster's name ("" for a node alone).
	Cluster string        `json:"cluster"`
	Nodes   []ClusterNode `json:"nodes"`
	Streams []StreamState `json:"streams"`
}

// StreamState is one JetStream stream (a KV bucket is stream KV_<name>):
// its leader and each replica.
type StreamState struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"`
	// Leader is the node (NATS server name) that leads the stream's RAFT
	// group; "" while it elects one.
	Leader   string         `json:"leader"`
	Messages uint64         `json:"messages"`
	Bytes    uint64         `json:"bytes"`
	Peers    []StreamMember `json:"peers"`
}

// StreamMember is a replica of a stream other than its leader.
type StreamMember struct {
	Name string `json:"name"`
	// Current: caught up with the leader. Offline: the group counts it
	// gone. Lag: operations behind the leader. ActiveMs: since it was last
	// heard from.
	Current  bool    `json:"current"`
	Offline  bool    `json:"offline,omitempty"`
	Lag      uint64  `json:"lag"`
	ActiveMs float64 `json:"active_ms"`
}

// ClusterStatus reads GET /v1/cluster.
func (c *Client) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	var s ClusterStatus
	return s, c.getJSON(ctx, "/v1/cluster", &s)
}
