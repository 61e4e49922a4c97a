package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
)

// submitSource sends the manifest file at path, which names a source the
// node fetches itself (source.location or source.git).
func (env *cli) submitSource(ctx context.Context, cf *clientFlags, path, origin string, noStart bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	m, err := manifest.CheckFile(path, data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if m.Source.Location == "" && m.Source.Git == "" {
		return usagef("%s: a manifest given alone must name its source (source.location or source.git); to submit the service's files, give its directory", path)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	src := m.Source.Location
	if m.Source.Git != "" {
		src = m.Source.Git + " at " + m.Source.Commit
	}
	fmt.Fprintf(env.stderr, "sending %s %s; the node fetches %s (digest %s)\n", m.Name, m.Version, src, m.Source.Digest)
	return env.send(cf, origin, api.SubmitOptions{NoStart: noStart}, func(c *api.Client, opts api.SubmitOptions) (api.SubmitResult, error) {
		return c.SubmitSource(ctx, body, opts)
	})
}
