package node

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storeGauges reports, at scrape time, the size of each JetStream stream
// the node's store and bus keep (bytes and messages) and the depth of the
// queue of each flow running on this node. Reading them asks the store,
// so a scrape reads at most every storeGaugesEvery, each read bounded by
// storeGaugesWait: a scrape never waits longer than that on a store in an
// election, and reports the last values it read (with the age of that
// read) when a read fails.
type storeGauges struct {
	n                       *Node
	bytes, msgs, queue, age *prometheus.Desc
	failed                  prometheus.Counter

	mu      sync.Mutex
	at      time.Time
	streams []streamSize
	queues  map[string]uint64
}

type streamSize struct {
	name        string
	bytes, msgs uint64
}

const (
	storeGaugesEvery = 5 * time.Second
	storeGaugesWait  = 2 * time.Second
)

func newStoreGauges(n *Node, failed prometheus.Counter) *storeGauges {
	return &storeGauges{
		n:      n,
		failed: failed,
		bytes:  prometheus.NewDesc("andromeda_store_stream_bytes", "Bytes stored in each JetStream stream of the node's store and bus (read at most every 5 s).", []string{"stream"}, nil),
		msgs:   prometheus.NewDesc("andromeda_store_stream_messages", "Messages stored in each JetStream stream of the node's store and bus (read at most every 5 s).", []string{"stream"}, nil),
		queue:  prometheus.NewDesc("andromeda_flow_queue_depth", "Messages waiting in the queue of each flow running on this node, those being run included.", []string{"flow"}, nil),
		age:    prometheus.NewDesc("andromeda_store_gauges_age_seconds", "How old the store sizes and flow queue depths reported are: they are read at most every 5 s, and kept when a read fails.", nil, nil),
	}
}

func (g *storeGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.bytes
	ch <- g.msgs
	ch <- g.queue
	ch <- g.age
}

func (g *storeGauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.at) >= storeGaugesEvery {
		g.read()
	}
	for _, s := range g.streams {
		ch <- prometheus.MustNewConstMetric(g.bytes, prometheus.GaugeValue, float64(s.bytes), s.name)
		ch <- prometheus.MustNewConstMetric(g.msgs, prometheus.GaugeValue, float64(s.msgs), s.name)
	}
	for flow, depth := range g.queues {
		ch <- prometheus.MustNewConstMetric(g.queue, prometheus.GaugeValue, float64(depth), flow)
	}
	age := 0.0
	if !g.at.IsZero() {
		age = time.Since(g.at).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(g.age, prometheus.GaugeValue, age)
}

// read asks the store for the streams' sizes and the running flows' queue
// depths; the caller holds g.mu.
func (g *storeGauges) read() {
	n := g.n
	if n.bus == nil || n.bus.JS == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeGaugesWait)
	defer cancel()
	var streams []streamSize
	l := n.bus.JS.ListStreams(ctx)
	for info := range l.Info() {
		streams = append(streams, streamSize{name: info.Config.Name, bytes: info.State.Bytes, msgs: info.State.Msgs})
	}
	if err := l.Err(); err != nil {
		g.failed.Inc()
		return
	}
	slices.SortFunc(streams, func(a, b streamSize) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	n.flows.mu.Lock()
	var flows []string
	for id := range n.flows.running {
		flows = append(flows, id)
	}
	n.flows.mu.Unlock()
	queues := make(map[string]uint64, len(flows))
	for _, id := range flows {
		depth, err := n.store.FlowQueueDepth(ctx, id)
		if err != nil {
			g.failed.Inc()
			return
		}
		queues[id] = depth
	}
	g.streams, g.queues, g.at = streams, queues, time.Now()
}
