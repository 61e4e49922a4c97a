// Command echoplugin is the go-plugin side of the benchmark: the echo
// handler served over go-plugin's default protocol (net/rpc).
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/andromeda-runner/andromeda/bench/goplugin"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: goplugin.Handshake,
		Plugins:         map[string]plugin.Plugin{"echo": &goplugin.EchoPlugin{Impl: goplugin.EchoFunc(goplugin.Echo)}},
	})
}
