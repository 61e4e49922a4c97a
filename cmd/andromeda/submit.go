package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
)

func (env *cli) submitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "submit DIR|MANIFEST",
		Short: "Pack a service directory and submit it, or submit a manifest naming its source",
		Long: `Submit checks the manifest in DIR, builds a missing Go entry to
WebAssembly (unless --no-build), packs the directory and sends it to the
node with the attestations in it. The node decides by its policy whether and
how to run it; submit prints the decision with its reasons, also when the
service is not admitted. An admitted service is deployed and started;
with --no-start it is deployed and waits for andromeda start.

Given a manifest file instead of a directory, submit sends the manifest
alone: it must name a source the node fetches itself, an archive
(source.location) or a repository at a pinned commit (source.git,
source.commit, optionally source.ref and source.path), with the files'
canonical digest (source.digest).`,
		Example: `  andromeda submit examples/greeter
  andromeda submit ./my-service --origin 'hostchain:btc;stake=250'
  andromeda submit ./my-service --json
  andromeda submit ./service-from-git.yaml`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: dirArgs(1),
	}
	cf := addClientFlags(cmd)
	noBuild := cmd.Flags().Bool("no-build", false, "do not build a missing Go entry before packing")
	origin := cmd.Flags().String("origin", "", "where the submission comes from: `kind:id[;stake=N]`")
	noStart := cmd.Flags().Bool("no-start", false, "admit and deploy the service but do not start it (andromeda start NAME starts it)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return env.submit(cmd.Context(), cf, args[0], *noBuild, *origin, *noStart)
	}
	return cmd
}

func (env *cli) submit(ctx context.Context, cf *clientFlags, dir string, noBuild bool, origin string, noStart bool) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return env.submitSource(ctx, cf, dir, origin, noStart)
	}
	// Check the manifest here first: the node checks it again, but a
	// mistake is cheaper to find before packing and uploading.
	m, err := manifest.Load(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	progress := env.stderr
	entry := filepath.Join(dir, filepath.FromSlash(m.Runtime.Entry))
	if _, err := os.Stat(entry); errors.Is(err, os.ErrNotExist) && !noBuild &&
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
	opts := api.SubmitOptions{NoStart: noStart}
	file, err := attest.ReadDirFile(dir)
	if err != nil {
		return err
	}
	opts.Attestations, opts.Delegations = file.Attestations, file.Delegations
	if err := attest.Check(opts.Attestations); err != nil {
		fmt.Fprintf(progress, "warning: %v\n", err)
	}
	for _, a := range opts.Attestations {
		if a.Digest != info.Digest {
			fmt.Fprintf(progress, "warning: attestation by %s signs %s, not this digest: it will not count (re-run andromeda attest)\n", a.Key, a.Digest)
		}
	}
	if len(opts.Attestations) > 0 {
		fmt.Fprintf(progress, "sending %d attestation(s)\n", len(opts.Attestations))
	}
	if len(opts.Delegations) > 0 {
		fmt.Fprintf(progress, "sending %d delegation(s)\n", len(opts.Delegations))
	}
	return env.send(cf, origin, opts, func(c *api.Client, opts api.SubmitOptions) (api.SubmitResult, error) {
		// A bar while the archive goes up, then a spinner while the node
		// admits and deploys it (dependencies, images, self-test).
		var (
			mu   sync.Mutex
			spin func()
			say  func(string)
		)
		// The node's long steps of the deploy (dependency installs, image
		// pulls) come as service.progress events: on the spinner at a
		// terminal, a line each elsewhere.
		stopWatch := env.watchProgress(ctx, c, m.Name, func(step string) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case say != nil:
				say(step)
			case !isTerminal(env.stderr):
				fmt.Fprintf(progress, "node: %s\n", step)
			}
		})
		defer stopWatch()
		bar := env.progressBar("uploading")
		uctx := api.WithUploadProgress(ctx, func(sent, total int64) {
			if bar != nil {
				bar(sent, total)
			}
			mu.Lock()
			defer mu.Unlock()
			if sent >= total && spin == nil {
				spin, say = env.spinnerSay("uploaded; the node admits and deploys it:")
			}
		})
		res, err := c.SubmitWith(uctx, data, opts)
		stopWatch()
		mu.Lock()
		if spin != nil {
			spin()
		}
		spin, say = func() {}, func(string) {} // a late callback starts or says nothing
		mu.Unlock()
		return res, err
	})
}

// send adds the --origin claim to opts, sends a submission with do and
// prints what the node answered.
func (env *cli) send(cf *clientFlags, origin string, opts api.SubmitOptions, do func(*api.Client, api.SubmitOptions) (api.SubmitResult, error)) error {
	if origin != "" {
		var err error
		if opts.Origin, err = policy.ParseOriginClaim(origin); err != nil {
			return usagef("--origin: %w", err)
		}
	}
	c, err := env.client(cf)
	if err != nil {
		return err
	}
	res, err := do(c, opts)
	return env.submitted(res, err, cf, opts.NoStart)
}

// submitted prints what the node answered a submission.
func (env *cli) submitted(res api.SubmitResult, err error, cf *clientFlags, noStart bool) error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Decision != nil && !cf.json {
		fmt.Fprintf(env.stdout, "%s\n", ae.Message)
		printReasons(env.stdout, ae.Decision.Reasons)
		return fmt.Errorf("not admitted (verdict %s)", ae.Decision.Verdict)
	}
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, res)
	}
	s := res.Service
	state := "submitted and deployed; started"
	if noStart {
		state = "submitted and deployed; not started (andromeda start " + s.Name + ")"
	}
	if res.Unchanged {
		state = "unchanged: this version is already deployed"
	}
	fmt.Fprintf(env.stdout, "%s %s %s\n  digest   %s\n  decision %s on driver %s\n", s.Name, s.Version, state, s.Digest, s.Decision.Verdict, s.Decision.Driver)
	printReasons(env.stdout, s.Decision.Reasons)
	return nil
}

// watchProgress calls show with each service.progress event of service
// stored from now on, until the returned stop is called (stop waits for
// the watch to end, so that nothing is shown after it). A watch the node
// refuses shows nothing: progress is a courtesy, the submission's answer
// is what counts.
func (env *cli) watchProgress(ctx context.Context, c *api.Client, service string, show func(string)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		c.Watch(ctx, api.WatchQuery{Service: service}, func(ev api.WatchEvent) error {
			if ev.Kind == api.WatchProgress {
				show(ev.Detail)
			}
			return nil
		})
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
}
