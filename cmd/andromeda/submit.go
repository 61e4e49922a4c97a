package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/manifest"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func submitCmd(ctx context.Context, env *cli, args []string) error {
	var cf clientFlags
	fs := env.flagSet("submit", &cf)
	noBuild := fs.Bool("no-build", false, "do not build a missing Go entry before packing")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: andromeda submit DIR [--json]")
	}
	dir := pos[0]
	// Check the manifest here first: the node checks it again, but a
	// mistake is cheaper to find before packing and uploading.
	m, err := manifest.Load(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	progress := env.stderr
	entry := filepath.Join(dir, filepath.FromSlash(m.Runtime.Entry))
	if _, err := os.Stat(entry); errors.Is(err, os.ErrNotExist) && !*noBuild &&
		m.Runtime.Driver == manifest.DriverWasm && gobuild.HasGoSources(dir) {
		shape := gobuild.Command
		if m.Mode == manifest.ModeServer {
			shape = gobuild.Reactor
		}
		fmt.Fprintf(progress, "building %s from Go sources (GOOS=wasip1, %s)… ", m.Runtime.Entry, shape)
		start := time.Now()
		if err := gobuild.Wasm(ctx, dir, entry, shape); err != nil {
			fmt.Fprintln(progress, "failed")
			return err
		}
		fmt.Fprintf(progress, "done in %s\n", time.Since(start).Round(10*time.Millisecond))
	}
	data, err := archive.Pack(dir)
	if err != nil {
		return err
	}
	info, err := archive.Inspect(bytes.NewReader(data), archive.Limits{})
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "packed %d files, %d bytes (%d compressed), digest %s\n", info.Files, info.Size, len(data), info.Digest)
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	res, err := c.Submit(ctx, data)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, res)
	}
	s := res.Service
	state := "submitted and deployed"
	if res.Unchanged {
		state = "unchanged: this version is already deployed"
	}
	fmt.Fprintf(env.stdout, "%s %s %s\n  digest   %s\n  decision %s on driver %s\n", s.Name, s.Version, state, s.Digest, s.Decision.Verdict, s.Decision.Driver)
	for _, r := range s.Decision.Reasons {
		mark := "ok  "
		if !r.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(env.stdout, "  %s %-20s %s\n", mark, r.Rule, r.Detail)
	}
	return nil
}
