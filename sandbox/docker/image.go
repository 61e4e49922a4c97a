package docker

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/internal/disk"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// imageID matches an image ID, the form sha256:<64 hex>.
var imageID = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// image is an image resolved for a deployment.
type image struct {
	id   string   // sha256:...
	ref  string   // as the spec or configuration named it
	argv []string // its entrypoint and command; empty: none
}

// resolveImage finds ref on the engine: an image ID (sha256:<64 hex>)
// must be present locally; a reference pinned by digest (name@sha256:...)
// must be present with that repo digest, or is pulled from a registry of
// Config.Registries; any other reference (a tag) must be present locally
// and is never pulled. The error names the image and why it cannot be
// used, and wraps ErrImage; when the engine cannot be reached or fails to
// answer, the error names the engine and its address and wraps ErrEngine
// instead (the image is not at fault).
func (d *Driver) resolveImage(ctx context.Context, ref string) (image, error) {
	cli, err := d.ready()
	if err != nil {
		return image{}, err
	}
	fail := func(format string, args ...any) (image, error) {
		return image{}, fmt.Errorf("%w: image %s: %s", ErrImage, ref, fmt.Sprintf(format, args...))
	}
	engineFail := func(what string, err error) (image, error) {
		return image{}, fmt.Errorf("%w at %s: image %s: %s: %v", ErrEngine, d.host(), ref, what, err)
	}
	if strings.HasPrefix(ref, "sha256:") {
		if !imageID.MatchString(ref) {
			return fail("an image ID must be sha256: and 64 lowercase hex digits")
		}
		img, err := cli.ImageInspect(ctx, ref)
		switch {
		case cerrdefs.IsNotFound(err):
			return fail("not on the engine (an image given by ID must be present locally: it is never pulled)")
		case err != nil && !cerrdefs.IsInvalidArgument(err):
			return engineFail("inspect", err)
		case err != nil:
			return fail("inspect: %v", err)
		case img.ID != ref:
			return fail("the engine resolved it to another image, %s", img.ID)
		}
		return imageOf(ref, img), nil
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fail("not a valid reference: %v", err)
	}
	digested, pinned := named.(reference.Canonical)
	img, err := cli.ImageInspect(ctx, ref)
	switch {
	case err != nil && cerrdefs.IsInvalidArgument(err):
		return fail("inspect: %v", err)
	case err != nil && !cerrdefs.IsNotFound(err):
		return engineFail("inspect", err)
	case err == nil && !pinned:
		return imageOf(ref, img), nil
	case err == nil && hasRepoDigest(img.RepoDigests, digested):
		return imageOf(ref, img), nil
	case !pinned:
		return fail("not on the engine, and a reference not pinned by digest (name@sha256:...) is never pulled")
	}
	// Pinned and absent (or present without that repo digest): pull.
	if !d.mayPull(named) {
		if len(d.cfg.Registries) == 0 {
			return fail("not on the engine with that digest, and the configuration lists no registries to pull from")
		}
		return fail("not on the engine with that digest, and %s is not under a registry the configuration lists (%s)", named.Name(), strings.Join(d.cfg.Registries, ", "))
	}
	if err := d.pull(ctx, cli, ref); client.IsErrConnectionFailed(err) {
		return engineFail("pull", err)
	} else if ctx.Err() != nil {
		// The deploy itself was cancelled or ran out of time: not the
		// image's fault, and the caller sees its context's error.
		return image{}, fmt.Errorf("image %s: pull: %w", ref, err)
	} else if err != nil {
		return fail("pull: %v", err)
	}
	img, err = cli.ImageInspect(ctx, ref)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return engineFail("inspect after the pull", err)
	} else if err != nil {
		return fail("inspect after the pull: %v", err)
	}
	if !hasRepoDigest(img.RepoDigests, digested) {
		return fail("the pulled image does not have the repo digest %s (it has %v)", digested.Digest(), img.RepoDigests)
	}
	return imageOf(ref, img), nil
}

func imageOf(ref string, img client.ImageInspectResult) image {
	var argv []string
	if img.Config != nil {
		argv = append(slices.Clone(img.Config.Entrypoint), img.Config.Cmd...)
	}
	return image{id: img.ID, ref: ref, argv: argv}
}

// hasRepoDigest reports whether digests (an image's RepoDigests) hold
// want's name and digest.
func hasRepoDigest(digests []string, want reference.Canonical) bool {
	return slices.ContainsFunc(digests, func(s string) bool {
		n, err := reference.ParseNormalizedNamed(s)
		c, ok := n.(reference.Canonical)
		return err == nil && ok && c.Name() == want.Name() && c.Digest() == want.Digest()
	})
}

// mayPull reports whether named is under a registry of
// Config.Registries, as written or as normalized (docker.io/library/...).
func (d *Driver) mayPull(named reference.Named) bool {
	full, familiar := named.Name(), reference.FamiliarName(named)
	return slices.ContainsFunc(d.cfg.Registries, func(prefix string) bool {
		return under(full, prefix) || under(familiar, prefix)
	})
}

// under reports whether name is prefix or below it (prefix/...).
func under(name, prefix string) bool {
	p := strings.TrimSuffix(prefix, "/")
	return name == p || strings.HasPrefix(name, p+"/")
}

// errPullTooLarge is why a pull stopped at Config.PullMaxSize.
var errPullTooLarge = errors.New("image larger than the configuration's pull_max_size")

// pull pulls ref within Config.PullTimeout, stopping it when its layers
// add up to more than Config.PullMaxSize, and logs its progress.
func (d *Driver) pull(parent context.Context, cli *client.Client, ref string) error {
	ctx, cancel := context.WithTimeout(parent, d.cfg.PullTimeout)
	defer cancel()
	log := d.cfg.Logger.With("image", ref)
	log.Info("docker driver: pulling image")
	sandbox.Progress(parent, "pulling image %s", ref)
	start := time.Now()
	// stopped says why a pull ended early when its context did: the
	// caller's own end (returned as it is), or Config.PullTimeout.
	stopped := func(err error) error {
		if perr := parent.Err(); perr != nil {
			return fmt.Errorf("cancelled after %v: %w", time.Since(start).Round(time.Millisecond), perr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped after %v (pull_timeout %v): %w", time.Since(start).Round(time.Second), d.cfg.PullTimeout, ctx.Err())
		}
		return err
	}
	resp, err := cli.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return stopped(err)
	}
	defer resp.Close()
	layers := map[string]int64{} // layer → bytes to download
	done := map[string]int64{}   // layer → bytes downloaded
	var last, told time.Time
	for m, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return stopped(err)
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
		if m.Progress != nil && m.ID != "" && m.Status == "Downloading" && m.Progress.Total > 0 {
			layers[m.ID] = m.Progress.Total
			done[m.ID] = m.Progress.Current
		}
		if m.ID != "" && m.Status == "Download complete" {
			done[m.ID] = layers[m.ID]
		}
		var total, got int64
		for id, n := range layers {
			total += n
			got += done[id]
		}
		if total > 0 && time.Since(told) >= time.Second {
			told = time.Now()
			sandbox.Progress(parent, "pulling image %s: %s of %s in %d layers, %s", ref, disk.Size(got), disk.Size(total), len(layers), time.Since(start).Round(time.Second))
		}
		if total > d.cfg.PullMaxSize {
			return fmt.Errorf("%w: its layers take %d bytes, more than %d", errPullTooLarge, total, d.cfg.PullMaxSize)
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			log.Info("docker driver: pull progress", "status", m.Status, "layer", m.ID, "layers_bytes", total)
		}
	}
	log.Info("docker driver: pulled image", "took", time.Since(start).Round(time.Millisecond))
	sandbox.Progress(parent, "pulled image %s in %s", ref, time.Since(start).Round(time.Millisecond))
	return nil
}
