package node

import (
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
)

// Notify puts ev on n's watch stream, as the node's own steps do.
func Notify(n *Node, ev api.WatchEvent) { n.notify("", ev) }

// NotifyWait is Notify that waits for room in the publisher's queue
// instead of dropping the event: benchmarks measure the stream, not the
// queue's overflow.
func NotifyWait(n *Node, ev api.WatchEvent) {
	ev.Time = time.Now().UTC()
	n.watch.queue <- watchItem{subject: bus.WatchSubject(ev.Service), ev: ev}
}

// LogLine logs line as service's run wrote it (run "": a worker's own).
func LogLine(n *Node, service, run, line string) {
	n.logSink(service, "1.0.0", "", run, n.log)(line)
}
