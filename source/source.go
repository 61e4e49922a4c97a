// Package source fetches the code of a service whose manifest names a
// source instead of coming with an uploaded archive: an archive at
// source.location (Fetch), or the files at a path of a pinned commit of a
// git repository at source.git (FetchGit). Either way it goes over HTTPS
// only, to hosts the operator allows (policy's allowed_sources), following
// at most MaxRedirects redirects and only to allowed HTTPS hosts, with the
// size cap enforced while the bytes stream in, and returns archive bytes
// only when their canonical digest (archive.Inspect) equals the digest the
// manifest declares.
//
// It does not unpack or store anything, decide whether a service may run,
// or retry: the node calls Fetch or FetchGit once per submission and treats
// any error as the submission's. FetchGit keeps the repository in memory
// and runs nothing of it: go-git runs no hooks, filters or checkouts.
//
// # Allowed hosts
//
// An allowed_sources entry is a host name, optionally with a port:
//
//	github.com          exactly github.com, port 443
//	*.githubusercontent.com
//	                    any name below githubusercontent.com (not the name itself), port 443
//	git.example.com:8443
//	                    exactly that host and port
//
// Names compare case-insensitively, ignoring a trailing dot. IP addresses
// are written as they are (IPv6 in brackets when a port follows). A location
// without a port uses 443. HostPattern is the matcher on its own; policy
// matches its network patterns with it too.
package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/andromeda-runner/andromeda/archive"
)

// MaxRedirects is the most redirects Fetch follows.
const MaxRedirects = 3

var (
	// ErrNotHTTPS marks a location or redirect that is not an https URL.
	ErrNotHTTPS = errors.New("not an https URL")
	// ErrNotAllowed marks a host not in the allowed list.
	ErrNotAllowed = errors.New("host not allowed")
	// ErrRedirects marks a fetch redirected more than MaxRedirects times.
	ErrRedirects = errors.New("too many redirects")
	// ErrTooLarge marks a body above the size cap.
	ErrTooLarge = errors.New("too large")
	// ErrStatus marks an answer other than 200 OK.
	ErrStatus = errors.New("unexpected HTTP status")
	// ErrDigest marks an archive whose canonical digest is not the one
	// declared.
	ErrDigest = errors.New("digest mismatch")
)

// Unpinned, as Fetch's digest, takes whatever archive the location holds
// (the KLYNTAR service object pins none): the caller admits it by the
// digest of what it got, and says so. It is no digest a manifest can
// declare.
const Unpinned = "unpinned"

// Fetch downloads the archive at location and returns its bytes. client is
// used for its Transport, Jar and Timeout (nil: http.DefaultClient); its
// CheckRedirect is replaced by Fetch's own. lim caps the download
// (lim.MaxCompressed, default 16 MiB, checked against Content-Length and
// again while streaming) and is passed to archive.Inspect, whose Info.Digest
// must equal digest unless digest is Unpinned. allowed is the list of allowed hosts; see the package
// documentation.
//
// Every error names the location and the rule broken: "source
// https://x/y.tar.gz: allowed_sources: host x is not allowed", "…:
// max_payload: body is larger than 16777216 bytes", "…: digest: archive is
// sha256:…, manifest declares sha256:…"; it wraps one of the package's
// sentinels, an archive error, or the transport's error.
func Fetch(ctx context.Context, client *http.Client, location, digest string, lim archive.Limits, allowed []string) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("source %s: %w", location, err) }
	lim, err := limitsWithDefaults(lim)
	if err != nil {
		return fail(err)
	}
	if err := CheckLocation(location, allowed); err != nil {
		return nil, fmt.Errorf("source %w", err)
	}
	c := http.DefaultClient
	if client != nil {
		c = client
	}
	cc := *c
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return fmt.Errorf("redirects: %w: more than %d", ErrRedirects, MaxRedirects)
		}
		if err := checkURL(req.URL, allowed); err != nil {
			return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Accept", "application/gzip, application/octet-stream, */*")
	resp, err := cc.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the location is in our own prefix already
		}
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("%w: %s", ErrStatus, resp.Status))
	}
	limit := lim.MaxCompressed
	if resp.ContentLength > limit {
		return fail(fmt.Errorf("max_payload: %w: Content-Length %d is above %d bytes", ErrTooLarge, resp.ContentLength, limit))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fail(fmt.Errorf("read body: %w", err))
	}
	if int64(len(data)) > limit {
		return fail(fmt.Errorf("max_payload: %w: body is larger than %d bytes", ErrTooLarge, limit))
	}
	info, err := archive.Inspect(bytes.NewReader(data), lim)
	if err != nil {
		return fail(err)
	}
	if digest != Unpinned && info.Digest != digest {
		return fail(fmt.Errorf("digest: %w: archive is %s, manifest declares %s", ErrDigest, info.Digest, digest))
	}
	return data, nil
}

func limitsWithDefaults(lim archive.Limits) (archive.Limits, error) {
	if err := lim.Validate(); err != nil {
		return lim, err
	}
	if lim.MaxCompressed == 0 {
		lim.MaxCompressed = archive.DefaultLimits().MaxCompressed
	}
	return lim, nil
}

// CheckLocation reports whether location is an https URL without
// credentials whose host is allowed. The error starts with the location and
// names the rule: "https://x/y: allowed_sources: host x is not allowed".
func CheckLocation(location string, allowed []string) error {
	u, err := url.Parse(location)
	if err != nil {
		return fmt.Errorf("%q: %w", location, err)
	}
	if err := checkURL(u, allowed); err != nil {
		return fmt.Errorf("%s: %w", u.Redacted(), err)
	}
	return nil
}

func checkURL(u *url.URL, allowed []string) error {
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w", ErrNotHTTPS)
	}
	if u.User != nil {
		return errors.New("credentials in the URL are not allowed")
	}
	if !HostAllowed(u.Host, allowed) {
		if len(allowed) == 0 {
			return fmt.Errorf("allowed_sources: %w: the list is empty, so this node fetches from nowhere", ErrNotAllowed)
		}
		return fmt.Errorf("allowed_sources: %w: %s", ErrNotAllowed, u.Host)
	}
	return nil
}
