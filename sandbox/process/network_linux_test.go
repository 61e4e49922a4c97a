package process

import (
	"net"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestNetwork checks the three network grants: none and a host list give
// the worker a namespace of its own with only loopback; any shares the
// host's, so the worker reaches a listener on the host's 127.0.0.1.
func TestNetwork(t *testing.T) {
	requireSandbox(t)
	d := newDriver(t, testConfig())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, c := range []struct {
		name    string
		network sandbox.Network
		reach   bool
	}{
		{"none", sandbox.Network{}, false},
		{"hosts", sandbox.Network{Hosts: []string{ln.Addr().String()}}, false},
		{"any", sandbox.Network{Any: true}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := escapeSpec(t, sandbox.ModeServer)
			spec.Network = c.network
			dep := deploy(t, d, spec)
			got := noopOf(t, run(t, dep, 0, map[string]any{"do": "dial", "addr": ln.Addr().String()}))
			if reached := got == "dial: ok"; reached != c.reach {
				t.Errorf("dial %s with network %s: %q, want reached %v", ln.Addr(), c.name, got, c.reach)
			}
			// Loopback inside the worker's own namespace is up.
			if !c.network.Any {
				got := noopOf(t, run(t, dep, 0, map[string]any{"do": "dial", "addr": "127.0.0.1:1"}))
				if !strings.Contains(got, "connection refused") {
					t.Errorf("dial 127.0.0.1:1 inside the sandbox: %q, want connection refused (loopback up, nothing listening)", got)
				}
			}
		})
	}
}
