package node

import "github.com/andromeda-runner/andromeda/sandbox"

// ReplaceDriver makes n use d instead of the driver of the same name. Call
// before Start.
func ReplaceDriver(n *Node, d sandbox.Driver) { n.testDrivers = append(n.testDrivers, d) }
