// Command prebuild builds every image of package dockerimg on the local
// Docker engine (DOCKER_HOST, else the default socket), printing progress,
// so that CI can start the slow ones (the Python root file system takes
// minutes) early and in the background, before the tests that use them.
// Run it from inside the module: go run ./internal/dockerimg/prebuild.
// It exits non-zero when an image could not be built.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/internal/dockerimg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "prebuild:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dockerimg.Progress = os.Stdout
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	builds := []struct {
		name  string
		build func() (dockerimg.Image, error)
	}{
		{"empty", func() (dockerimg.Image, error) { return dockerimg.Empty(ctx, cli) }},
		{"node", func() (dockerimg.Image, error) { return dockerimg.Node(ctx, cli) }},
		{"python", func() (dockerimg.Image, error) { return dockerimg.Python(ctx, cli) }},
	}
	var errs []error
	for _, b := range builds {
		start := time.Now()
		img, err := b.build()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
			fmt.Printf("prebuild: %s: failed after %s: %v\n", b.name, time.Since(start).Round(time.Millisecond), err)
			continue
		}
		fmt.Printf("prebuild: %s: %s (%s) in %s\n", b.name, img.Ref, img.ID, time.Since(start).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}
