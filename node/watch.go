package node

import "github.com/andromeda-runner/andromeda/api"

// notify puts ev on the node's stream of what happens (GET /v1/watch).
// It never blocks a run or a lifecycle step and never fails one: a stream
// that cannot keep up or cannot store loses the event and counts it.
func (n *Node) notify(ev api.WatchEvent) {
	_ = ev // the stream is built on the bus by the watch work; until then events go nowhere
}
