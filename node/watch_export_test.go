package node

import "github.com/andromeda-runner/andromeda/api"

// Notify puts ev on n's watch stream, as the node's own steps do.
func Notify(n *Node, ev api.WatchEvent) { n.notify(ev) }
