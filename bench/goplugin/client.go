package goplugin

import (
	"fmt"
	"io"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Start launches the echo plugin binary and returns its host side over the
// protocol of version (VersionNetRPC or VersionGRPC), and what stops it.
func Start(bin string, version int) (Echoer, func(), error) {
	protocol := plugin.ProtocolNetRPC
	if version == VersionGRPC {
		protocol = plugin.ProtocolGRPC
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{version: Plugins(nil)[version]},
		AllowedProtocols: []plugin.Protocol{protocol},
		Cmd:              exec.Command(bin),
		Logger:           hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Error}),
	})
	rpcClient, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, nil, err
	}
	stop := func() {
		rpcClient.Close() // before Kill, so that yamux does not log the broken pipe
		client.Kill()
	}
	raw, err := rpcClient.Dispense("echo")
	if err != nil {
		stop()
		return nil, nil, err
	}
	e, ok := raw.(Echoer)
	if !ok {
		stop()
		return nil, nil, fmt.Errorf("go-plugin dispensed a %T", raw)
	}
	if client.NegotiatedVersion() != version {
		stop()
		return nil, nil, fmt.Errorf("go-plugin negotiated version %d, want %d", client.NegotiatedVersion(), version)
	}
	return e, stop, nil
}
