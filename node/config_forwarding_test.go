package node_test

import (
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
)

// TestForwardingConfigRefused: every bad forwarding key is named with its
// rule, all in one answer.
func TestForwardingConfigRefused(t *testing.T) {
	c := node.ForwardingConfig{
		URL: "ftp://a",
		Peers: []node.PeerConfig{
			{URL: "https://b.example:7070", Token: "t"},
			{URL: "https://b.example:7070", Token: " "},
			{URL: "https://c.example/api", Token: "t"},
		},
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad forwarding config")
	}
	for _, want := range []string{
		"forwarding.url: must be an http or https base URL",
		"forwarding.peers[1].url: listed twice",
		"forwarding.peers[1].token: must not be empty",
		"forwarding.peers[2].url: must be an http or https base URL",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v\nwant it to say %q", err, want)
		}
	}
	if err := (node.ForwardingConfig{URL: "https://a.example:7070/", Peers: []node.PeerConfig{{URL: "http://10.0.0.2:7070", Token: "t"}}}).Validate(); err != nil {
		t.Errorf("a good forwarding config: %v", err)
	}
}
