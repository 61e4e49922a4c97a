package node_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/server"
)

// TestForwardTooLarge: what a node would send another over NATS and one
// NATS message cannot carry is refused as too large, naming the limit and
// the node to send it to, rather than heard of as "did not answer".
func TestForwardTooLarge(t *testing.T) {
	n := startNode(t)
	if err := node.FitsMessage(n.Node, make([]byte, 1<<20)); err != nil {
		t.Errorf("1 MiB: %v", err)
	}
	err := node.FitsMessage(n.Node, make([]byte, 9<<20))
	if !errors.Is(err, server.ErrTooLarge) || !strings.Contains(err.Error(), "max_payload") || !strings.Contains(err.Error(), "node n2") {
		t.Errorf("9 MiB = %v; want too large (413) naming max_payload and the node", err)
	}
}
