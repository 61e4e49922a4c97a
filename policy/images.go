package policy

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/manifest"
)

// The docker image rules: images (is runtime.image pinned, or may it be a
// tag) and the image half of registries (does a reference prefix of
// registries.docker match it).

// DockerLanguages are the languages of process services the docker driver
// can also run, each in the runtime image the node configures for it
// (docker.images).
var DockerLanguages = []string{"node", "python", "exec"}

var (
	// digestRE is a registry digest, the pin of REF@sha256:<hex>.
	digestRE = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	// imageIDRE is a local image ID.
	imageIDRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// prefixRE is an image reference prefix: a registry host (with a dot
	// or a port, or localhost), then path parts, optionally ending in /.
	prefixRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?)(/[a-z0-9]+([._-][a-z0-9]+)*)*/?$`)
)

// PinnedImage reports whether ref names one image for good: a reference
// with a registry digest (REF@sha256:<64 hex>) or an image ID
// (sha256:<64 hex>).
func PinnedImage(ref string) bool {
	return digestRE.MatchString(ref) || imageIDRE.MatchString(ref)
}

// imageID reports whether ref is a local image ID rather than a reference
// to a repository.
func imageID(ref string) bool { return imageIDRE.MatchString(ref) }

// ImageRepository returns ref as the docker engine reads it, with its
// registry host and repository path in full: "node:22" is
// "docker.io/library/node:22", "org/app@sha256:…" is
// "docker.io/org/app@sha256:…", and a reference whose first part is a
// registry host (it has a dot or a port, or is localhost) is as written,
// with the host lowercased.
func ImageRepository(ref string) string {
	first, rest, found := strings.Cut(ref, "/")
	switch {
	case found && (strings.ContainsAny(first, ".:") || first == "localhost"):
		return strings.ToLower(first) + "/" + rest
	case found:
		return "docker.io/" + ref
	}
	return "docker.io/library/" + ref
}

// DockerPrefixes turns registries.docker into the reference prefixes an
// image must start with (see ImageRepository): a registry URL
// (https://ghcr.io, https://registry:5000/team) is its host and path
// (ghcr.io, registry:5000/team), a prefix is as written. The docker
// driver pulls from these prefixes only.
func DockerPrefixes(entries []string) []string {
	var out []string
	for _, e := range entries {
		p := e
		if u, err := url.Parse(e); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
			p = strings.ToLower(u.Host) + strings.TrimRight(u.Path, "/")
		}
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// DockerPrefixes returns the reference prefixes of the policy's
// registries.docker (see the package function); nil when it lists none.
func (c *Compiled) DockerPrefixes() []string { return slices.Clone(c.dockerRe) }

// matchPrefix reports whether the full reference repo (ImageRepository)
// starts with prefix: a prefix ending in / is a plain prefix; any other
// matches whole path parts, so ghcr.io/org admits ghcr.io/org/app and
// ghcr.io/org:1 but not ghcr.io/organisation/app, and ghcr.io does not
// admit ghcr.io:8443/app.
func matchPrefix(repo, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(repo, prefix)
	}
	rest, ok := strings.CutPrefix(repo, prefix)
	switch {
	case !ok:
		return false
	case rest == "" || rest[0] == '/' || rest[0] == '@':
		return true
	}
	// After a repository a colon starts a tag; after a bare host it
	// starts a port, which makes another registry.
	return rest[0] == ':' && strings.Contains(prefix, "/")
}

// imageSource checks one entry of registries.docker: a registry URL or a
// reference prefix.
func (v *validator) imageSource(path, s string) {
	if strings.Contains(s, "://") {
		v.url(path, s)
		return
	}
	if len(s) > 256 || !prefixRE.MatchString(s) {
		v.fail(path, "must be an http or https registry URL (https://ghcr.io) or an image reference prefix starting with a registry host (ghcr.io/org/, localhost:5000/team)")
	}
}

// imageService reports whether the service runs an image of its own: a
// docker service with runtime.image (an archive service on docker runs the
// node's runtime image, which the operator chose).
func (a *admission) imageService() bool {
	return a.d.Driver == string(manifest.DriverDocker) && a.m.Runtime.Image != ""
}

// images checks that runtime.image is pinned unless images.allow_tags.
func (a *admission) images() {
	ref := a.m.Runtime.Image
	switch {
	case !a.imageService():
		a.add("images", true, "no runtime.image: not an image service")
	case imageID(ref):
		a.add("images", true, "runtime.image %s is an image ID", ref)
	case PinnedImage(ref):
		a.add("images", true, "runtime.image %s is pinned by digest", ref)
	case a.c.p.Images.AllowTags:
		a.add("images", true, "runtime.image %s is a tag, which images.allow_tags admits: it runs whatever the tag names when it is pulled", ref)
	default:
		a.add("images", false, "runtime.image %s is not pinned: want REF@sha256:<64 hex> or an image ID sha256:<64 hex> (images.allow_tags is false)", ref)
	}
}

// imageRegistries is the image half of the registries rule: "" when the
// image may come from where it does, else why not. ok reports which.
func (a *admission) imageRegistries() (detail string, ok bool) {
	ref := a.m.Runtime.Image
	switch {
	case imageID(ref):
		return fmt.Sprintf("image %s is an image ID: a local image, nothing is pulled", ref), true
	case len(a.c.dockerRe) == 0:
		return "", true
	}
	repo := ImageRepository(ref)
	for _, p := range a.c.dockerRe {
		if matchPrefix(repo, p) {
			return fmt.Sprintf("image %s matches %s in registries.docker", ref, p), true
		}
	}
	full := ""
	if repo != ref {
		full = " (" + repo + ")"
	}
	return fmt.Sprintf("image %s%s matches none of registries.docker (%s)", ref, full, strings.Join(a.c.dockerRe, ", ")), false
}
