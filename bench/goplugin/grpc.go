package goplugin

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The go-plugin protocol versions the echo plugin serves: version 1 over
// net/rpc (go-plugin's default), version 2 over gRPC. A client picks one
// by the versions it offers.
const (
	VersionNetRPC = 1
	VersionGRPC   = 2
)

// Plugins is the echo plugin's versioned plugin set, for both sides.
func Plugins(impl Echoer) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		VersionNetRPC: {"echo": &EchoPlugin{Impl: impl}},
		VersionGRPC:   {"echo": &EchoGRPCPlugin{Impl: impl}},
	}
}

// EchoGRPCPlugin is the echo service over go-plugin's gRPC protocol. The
// service is declared by hand (no generated code): one unary method whose
// request and answer are protobuf's BytesValue, holding the JSON.
type EchoGRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Echoer
}

const invokeMethod = "/andromeda.bench.Echo/Invoke"

var echoService = grpc.ServiceDesc{
	ServiceName: "andromeda.bench.Echo",
	HandlerType: (*Echoer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Invoke",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			out, err := srv.(Echoer).Invoke(in.Value)
			if err != nil {
				return nil, err
			}
			return wrapperspb.Bytes(out), nil
		},
	}},
}

// GRPCServer registers the echo service, in the plugin process.
func (p *EchoGRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&echoService, p.Impl)
	return nil
}

// GRPCClient returns the host side.
func (p *EchoGRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{ctx: ctx, c: c}, nil
}

type grpcClient struct {
	ctx context.Context
	c   *grpc.ClientConn
}

func (c *grpcClient) Invoke(input []byte) ([]byte, error) {
	out := new(wrapperspb.BytesValue)
	if err := c.c.Invoke(c.ctx, invokeMethod, wrapperspb.Bytes(input), out); err != nil {
		return nil, err
	}
	return out.Value, nil
}
