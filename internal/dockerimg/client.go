package dockerimg

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// Client returns a client of the Docker engine DOCKER_HOST names (else the
// default socket), with API version negotiation, closed when t ends. When
// no engine answers within 10 s it skips t, or fails it under
// ANDROMEDA_CI_STRICT=1 (sandboxtest.Require).
func Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	sandboxtest.Require(t, err == nil, fmt.Sprintf("a Docker engine client is needed: %v", err))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		cli.Close()
	}
	sandboxtest.Require(t, err == nil, fmt.Sprintf("a Docker engine answering at %s is needed: %v", cli.DaemonHost(), err))
	t.Cleanup(func() { cli.Close() })
	return cli
}
