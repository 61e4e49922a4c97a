// Command echoplugin is the go-plugin side of the benchmark: the echo
// handler served over go-plugin's net/rpc (protocol version 1, its
// default) or gRPC (version 2), whichever the host asks for.
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/andromeda-runner/andromeda/bench/goplugin"
)

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  goplugin.Handshake,
		VersionedPlugins: goplugin.Plugins(goplugin.EchoFunc(goplugin.Echo)),
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
