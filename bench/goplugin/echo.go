// Package goplugin is the HashiCorp go-plugin side of the bench command's
// comparison (and of its own go test benchmark): the same 100-byte JSON
// echo the process driver's exec worker answers, served by an ordinary
// child process (no sandbox) over go-plugin's net/rpc (its default, on a
// yamux-multiplexed Unix socket) or gRPC. It lives in the bench module so
// that the runner does not depend on go-plugin.
package goplugin

import (
	"encoding/json"
	"net/rpc"

	"github.com/hashicorp/go-plugin"

	"github.com/andromeda-runner/andromeda/contract"
)

// Handshake is the go-plugin handshake of the echo plugin.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "ANDROMEDA_BENCH_PLUGIN",
	MagicCookieValue: "echo",
}

// Echoer is the plugin's interface: one invocation, the contract's Input
// in, its Output out, both as JSON, like a runtime-protocol worker.
type Echoer interface {
	Invoke(input []byte) ([]byte, error)
}

// EchoInput is the handler both sides run: the conformance guest's echo.
func EchoInput(in contract.Input) (contract.Output, error) {
	var op struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(in.Message, &op); err != nil {
		return contract.Output{}, err
	}
	return contract.Output{Emit: []contract.Emit{{Topic: "echo", Message: op.Data}}}, nil
}

// Echo is EchoInput on JSON, as the plugin serves it: decode the input,
// decide, encode the output, the work runtimes/go does for a worker.
func Echo(input []byte) ([]byte, error) {
	var in contract.Input
	if err := json.Unmarshal(input, &in); err != nil {
		return nil, err
	}
	out, err := EchoInput(in)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// EchoPlugin is the go-plugin plugin.Plugin of the echo service (net/rpc).
type EchoPlugin struct{ Impl Echoer }

// Server returns the RPC server side, run in the plugin process.
func (p *EchoPlugin) Server(*plugin.MuxBroker) (any, error) { return &rpcServer{impl: p.Impl}, nil }

// Client returns the RPC client side, used by the host.
func (p *EchoPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return &rpcClient{c: c}, nil
}

type rpcServer struct{ impl Echoer }

// Invoke is the net/rpc method.
func (s *rpcServer) Invoke(input []byte, out *[]byte) error {
	b, err := s.impl.Invoke(input)
	*out = b
	return err
}

type rpcClient struct{ c *rpc.Client }

func (c *rpcClient) Invoke(input []byte) ([]byte, error) {
	var out []byte
	err := c.c.Call("Plugin.Invoke", input, &out)
	return out, err
}

// EchoFunc adapts Echo to Echoer.
type EchoFunc func([]byte) ([]byte, error)

// Invoke calls f.
func (f EchoFunc) Invoke(input []byte) ([]byte, error) { return f(input) }
