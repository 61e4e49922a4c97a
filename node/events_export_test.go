package node

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// EventsStored is how many events n's events stream holds.
func EventsStored(ctx context.Context, n *Node) (uint64, error) {
	info, err := n.events.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// EventConsumers lists the durable consumers feeding service's event
// triggers.
func EventConsumers(ctx context.Context, n *Node, service string) ([]string, error) {
	names := n.events.stream.ConsumerNames(ctx)
	var out []string
	for c := range names.Name() {
		if strings.HasPrefix(c, bus.ConsumerEventsPrefix+service+"_") {
			out = append(out, c)
		}
	}
	return out, names.Err()
}

// EventsWaiting is how many events the consumer of service's trigger i
// on topic has yet to deliver, and how many it delivered without an ack
// or a termination yet.
func EventsWaiting(ctx context.Context, n *Node, service string, i int, topic string) (pending uint64, unacked int, err error) {
	c, err := n.events.stream.Consumer(ctx, consumerName(service, i, topic))
	if err != nil {
		return 0, 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.NumPending, info.NumAckPending, nil
}

// NakRecordedEvents makes n send back, instead of acknowledging, the next
// count events whose runs were recorded, as a node does whose ack was lost
// to a crash; they are delivered again at once.
func NakRecordedEvents(n *Node, count int) {
	n.events.mu.Lock()
	defer n.events.mu.Unlock()
	left := count
	n.events.testRecorded = func(msg jetstream.Msg) bool {
		n.events.mu.Lock()
		defer n.events.mu.Unlock()
		if left == 0 {
			return false
		}
		left--
		msg.Nak()
		return true
	}
}

// OnEventRecorded makes n call f with the stream sequence of each event
// whose run was recorded, just before the event is acknowledged as usual;
// nil stops it.
func OnEventRecorded(n *Node, f func(seq uint64)) {
	n.events.mu.Lock()
	defer n.events.mu.Unlock()
	if f == nil {
		n.events.testRecorded = nil
		return
	}
	n.events.testRecorded = func(msg jetstream.Msg) bool {
		if md, err := msg.Metadata(); err == nil {
			f(md.Sequence.Stream)
		}
		return false
	}
}
