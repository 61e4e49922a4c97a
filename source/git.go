package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/andromeda-runner/andromeda/archive"
)

// DefaultGitTimeout bounds a FetchGit whose options set no Timeout.
const DefaultGitTimeout = 2 * time.Minute

var (
	// ErrRef marks a source.ref the server does not have, or one that
	// points at another commit than the one pinned (the ref moved).
	ErrRef = errors.New("ref does not match")
	// ErrCommit marks a pinned commit the server does not send, will not
	// send by hash, or sends with another hash.
	ErrCommit = errors.New("commit not fetched")
	// ErrSubmodule marks a tree with a submodule (a gitlink entry or a
	// .gitmodules file): its code lives in another repository, which this
	// node does not fetch.
	ErrSubmodule = errors.New("submodules are not supported")
	// ErrLFS marks a tree using Git LFS (a filter=lfs attribute or an LFS
	// pointer file): its content lives outside the repository, which this
	// node does not fetch.
	ErrLFS = errors.New("git lfs is not supported")
	// ErrPath marks a source.path that is not a directory at the commit.
	ErrPath = errors.New("path not found")
)

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// GitOptions say what FetchGit fetches and within which bounds. Repo,
// Commit and Digest are required.
type GitOptions struct {
	// Repo is the repository's https URL (source.git).
	Repo string
	// Commit is the full commit hash, 40 lowercase hex digits.
	Commit string
	// Ref, when set, is a tag or branch name (or a full refs/… name) the
	// server must advertise pointing at Commit.
	Ref string
	// Path is the directory of the commit's tree to pack; "" is the root.
	Path string
	// Digest is the canonical digest the packed files must have.
	Digest string
	// Client is used for its Transport, Jar and Timeout (nil: a client with
	// http.DefaultTransport); its CheckRedirect runs after FetchGit's own.
	Client *http.Client
	// Limits cap the fetch: MaxCompressed (default 16 MiB) caps the bytes
	// downloaded and the archive produced, and the others cap the tree as
	// archive.Unpack would.
	Limits archive.Limits
	// Allowed are the allowed hosts (policy allowed_sources); see the
	// package documentation.
	Allowed []string
	// Timeout bounds the whole fetch. Default DefaultGitTimeout.
	Timeout time.Duration
}

// FetchGit fetches Commit of the repository Repo over smart HTTPS into
// memory and returns the canonical tar.gz of the files at Path (as
// archive.PackFiles writes it, so archive.Inspect of the result gives the
// digest the author computes with archive.DigestDir on a checkout), once
// every check held:
//
//   - Repo is https, without credentials, on an allowed host, and so is
//     every redirect of the first request (the only one followed);
//   - with Ref, the server advertises Ref pointing at Commit (through an
//     annotated tag too); a ref pointing elsewhere has moved and is refused
//     before anything is downloaded;
//   - without Ref, an advertised ref pointing at Commit is asked for, or
//     else Commit by hash, which servers allow when they advertise
//     allow-reachable-sha1-in-want or allow-tip-sha1-in-want;
//   - at most Limits.MaxCompressed bytes are downloaded (counted on the
//     wire, the fetch aborted past it), no object inflates beyond the
//     tree's caps, and the fetch ends within Timeout;
//   - the commit received hashes to Commit (and every object to its name);
//   - the tree at Path holds no submodule (gitlink or .gitmodules) and no
//     Git LFS (filter=lfs in a .gitattributes on the way, or a pointer file):
//     both are refused, always;
//   - the files fit Limits and their canonical digest equals Digest.
//
// Only the commit asked for is fetched (depth 1) when the server allows
// shallow fetches. Nothing of the repository runs: go-git runs no hooks,
// filters or checkouts, and the objects never touch the disk. Concurrent
// calls share nothing but Client's transport.
//
// Every error starts with the repository and commit and names the rule
// broken, and wraps one of the package's sentinels, an archive error, or
// the transport's error: "source https://h/o/r at 0123…: ref: ref does not
// match: v1.2 resolves to abc…, the manifest pins 0123…: the ref moved".
func FetchGit(ctx context.Context, o GitOptions) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("source %s at %s: %w", o.Repo, o.Commit, err)
	}
	lim, err := gitLimits(o.Limits)
	if err != nil {
		return fail(err)
	}
	switch {
	case !commitRE.MatchString(o.Commit):
		return fail(fmt.Errorf("commit: %w: must be a full commit hash of 40 lowercase hex digits", ErrCommit))
	case o.Path != "" && (path.Clean(o.Path) != o.Path || o.Path == "." || o.Path == ".." || strings.HasPrefix(o.Path, "../") || strings.HasPrefix(o.Path, "/")):
		return fail(fmt.Errorf("path: %w: %q is not a clean relative path", ErrPath, o.Path))
	}
	if err := CheckLocation(o.Repo, o.Allowed); err != nil {
		return nil, fmt.Errorf("source %w", err)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultGitTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	f := &gitFetch{o: o, lim: lim, want: plumbing.NewHash(o.Commit)}
	f.counter = &countingTransport{limit: lim.MaxCompressed}
	data, err := f.run(ctx)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrTooLarge) {
			err = fmt.Errorf("timeout: fetch took longer than %s: %w", timeout, err)
		}
		return fail(err)
	}
	return data, nil
}

// gitLimits fills lim's zero fields from archive.DefaultLimits.
func gitLimits(lim archive.Limits) (archive.Limits, error) {
	if err := lim.Validate(); err != nil {
		return lim, err
	}
	d := archive.DefaultLimits()
	for _, f := range []struct{ v, d *int64 }{
		{&lim.MaxCompressed, &d.MaxCompressed}, {&lim.MaxSize, &d.MaxSize}, {&lim.MaxFileSize, &d.MaxFileSize},
		{&lim.MaxRatio, &d.MaxRatio}, {&lim.RatioFloor, &d.RatioFloor},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	for _, f := range []struct{ v, d *int }{{&lim.MaxEntries, &d.MaxEntries}, {&lim.MaxPathLen, &d.MaxPathLen}, {&lim.MaxDepth, &d.MaxDepth}} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	return lim, nil
}

// gitFetch is one FetchGit.
type gitFetch struct {
	o       GitOptions
	lim     archive.Limits
	want    plumbing.Hash // the pinned commit
	counter *countingTransport
}

func (f *gitFetch) client() *http.Client {
	c := http.Client{}
	if f.o.Client != nil {
		c = *f.o.Client
	}
	f.counter.next = c.Transport
	if f.counter.next == nil {
		f.counter.next = http.DefaultTransport
	}
	c.Transport = f.counter
	next := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return fmt.Errorf("redirects: %w: more than %d", ErrRedirects, MaxRedirects)
		}
		if err := checkURL(req.URL, f.o.Allowed); err != nil {
			return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &c
}

func (f *gitFetch) run(ctx context.Context) ([]byte, error) {
	ep, err := transport.NewEndpoint(f.o.Repo)
	if err != nil {
		return nil, err
	}
	// The transport is built for this fetch alone: go-git's protocol
	// registry (client.InstallProtocol) is global and is never touched.
	sess, err := githttp.NewClient(f.client()).NewUploadPackSession(ep, nil)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return nil, f.transportError("list refs", err)
	}
	want, err := f.resolve(ar)
	if err != nil {
		return nil, err
	}
	pack, shallow, err := f.download(ctx, sess, ar, want)
	if err != nil {
		return nil, err
	}
	if err := checkPack(pack, f.lim, shallow); err != nil {
		return nil, err
	}
	st := memory.NewStorage()
	if err := packfile.UpdateObjectStorage(st, bytes.NewReader(pack)); err != nil {
		return nil, fmt.Errorf("packfile: %w", err)
	}
	pack = nil
	files, err := f.files(st)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	info, err := archive.PackFiles(&buf, files, f.lim)
	if err != nil {
		return nil, err
	}
	if int64(buf.Len()) > f.lim.MaxCompressed {
		return nil, fmt.Errorf("max_payload: %w: the packed archive is %d bytes, above %d", ErrTooLarge, buf.Len(), f.lim.MaxCompressed)
	}
	if info.Digest != f.o.Digest {
		return nil, fmt.Errorf("digest: %w: the files at %s are %s, the manifest declares %s", ErrDigest, f.where(), info.Digest, f.o.Digest)
	}
	return buf.Bytes(), nil
}

func (f *gitFetch) where() string {
	if f.o.Path == "" {
		return "the root"
	}
	return f.o.Path
}

// transportError names a cap the transport ran into, or the step.
func (f *gitFetch) transportError(step string, err error) error {
	if f.counter.exceeded.Load() {
		return fmt.Errorf("max_payload: %w: the server sent more than %d bytes", ErrTooLarge, f.lim.MaxCompressed)
	}
	if errors.Is(err, transport.ErrRepositoryNotFound) || errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
		return fmt.Errorf("%s: %w (a private repository needs credentials, which a source cannot carry)", step, err)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// resolve checks Ref against the advertised refs and returns what to ask
// the server for: the advertised ref pointing at the commit (a tag object
// for an annotated tag), or the commit's hash.
func (f *gitFetch) resolve(ar *packp.AdvRefs) (plumbing.Hash, error) {
	if r := f.o.Ref; r != "" {
		names := []string{"refs/tags/" + r, "refs/heads/" + r}
		if strings.HasPrefix(r, "refs/") {
			names = []string{r}
		}
		for _, name := range names {
			h, ok := ar.References[name]
			if !ok {
				continue
			}
			got := h
			if p, ok := ar.Peeled[name]; ok {
				got = p
			}
			if got != f.want {
				return plumbing.ZeroHash, fmt.Errorf("ref: %w: %s resolves to %s, the manifest pins %s: the ref moved", ErrRef, r, got, f.want)
			}
			return h, nil
		}
		return plumbing.ZeroHash, fmt.Errorf("ref: %w: the server has no %s", ErrRef, strings.Join(names, " or "))
	}
	for name, h := range ar.References {
		if h == f.want || ar.Peeled[name] == f.want {
			return h, nil
		}
	}
	caps := ar.Capabilities
	if !caps.Supports(capability.AllowReachableSHA1InWant) && !caps.Supports(capability.AllowTipSHA1InWant) {
		return plumbing.ZeroHash, fmt.Errorf("commit: %w: no ref the server advertises points at %s, and the server does not let clients fetch a commit by hash (no allow-reachable-sha1-in-want): name the tag or branch pointing at it in source.ref", ErrCommit, f.want)
	}
	return f.want, nil
}

// download asks for want (depth 1 when the server can) and returns the
// packfile, read whole within the byte cap, and whether it was asked for
// at depth 1.
func (f *gitFetch) download(ctx context.Context, sess transport.UploadPackSession, ar *packp.AdvRefs, want plumbing.Hash) (pack []byte, shallow bool, err error) {
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	req.Wants = []plumbing.Hash{want}
	if ar.Capabilities.Supports(capability.Shallow) {
		req.Depth = packp.DepthCommits(1)
		if err := req.Capabilities.Set(capability.Shallow); err != nil {
			return nil, false, err
		}
		shallow = true
	}
	if ar.Capabilities.Supports(capability.NoProgress) {
		if err := req.Capabilities.Set(capability.NoProgress); err != nil {
			return nil, false, err
		}
	}
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		err = f.transportError("fetch", err)
		if !errors.Is(err, ErrTooLarge) && want == f.want {
			err = fmt.Errorf("%w (asked for commit %s by hash: %w)", err, want, ErrCommit)
		}
		return nil, false, err
	}
	defer resp.Close()
	var r io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	pack, err = io.ReadAll(io.LimitReader(r, f.lim.MaxCompressed+1))
	if err == nil && int64(len(pack)) > f.lim.MaxCompressed {
		f.counter.exceeded.Store(true)
		err = ErrTooLarge
	}
	if err != nil {
		return nil, false, f.transportError("fetch", err)
	}
	return pack, shallow, nil
}

// checkPack bounds what parsing the packfile allocates before it is
// parsed: every object's inflated size (for a delta, the size of the
// object it makes) at most lim.MaxFileSize (and 1 MiB at least, for large
// trees), and all of them together at most twice lim.MaxSize plus 1 MiB
// per thousand entries. Inflating past a declared size is go-git's own
// check. The number of objects is bounded too (empty blobs cost nothing
// to inflate but storing each costs memory): at depth 1 a commit of a
// tree of at most lim.MaxEntries nodes needs about one object per node, so
// packObjects allows four per node plus a few; a full-history pack from a
// server that cannot shallow-fetch gets a looser, still finite, bound.
// So a small packfile cannot make the node allocate gigabytes.
func checkPack(pack []byte, lim archive.Limits, shallow bool) error {
	s := packfile.NewScanner(bytes.NewReader(pack))
	_, count, err := s.Header()
	if err != nil {
		return fmt.Errorf("packfile: %w", err)
	}
	if bound := packObjects(lim, shallow); int64(count) > bound {
		how := "at depth 1"
		if !shallow {
			how = "with its history (the server cannot fetch at depth 1)"
		}
		return fmt.Errorf("max_files: %w: the packfile holds %d objects, more than %d for a commit %s of a tree of at most %d files (upload.max_files)", archive.ErrTooLarge, count, bound, how, lim.MaxEntries)
	}
	perObject := max(lim.MaxFileSize, 1<<20)
	budget := 2*lim.MaxSize + int64(lim.MaxEntries)<<10
	var total int64
	for range count {
		h, err := s.NextObjectHeader()
		if err != nil {
			return fmt.Errorf("packfile: %w", err)
		}
		size := h.Length
		if h.Type == plumbing.OFSDeltaObject || h.Type == plumbing.REFDeltaObject {
			if h.Length > perObject {
				return fmt.Errorf("max_size: %w: a delta of %d bytes in the packfile, above %d", archive.ErrTooLarge, h.Length, perObject)
			}
			var hdr deltaHeader
			if _, _, err := s.NextObject(&hdr); err != nil {
				return fmt.Errorf("packfile: %w", err)
			}
			if size, err = hdr.targetSize(); err != nil {
				return fmt.Errorf("packfile: %w", err)
			}
		}
		if size > perObject {
			return fmt.Errorf("max_file_size: %w: an object of %d bytes in the packfile, above %d", archive.ErrTooLarge, size, perObject)
		}
		if total += size; total > budget {
			return fmt.Errorf("max_size: %w: the packfile's objects inflate to more than %d bytes", archive.ErrTooLarge, budget)
		}
	}
	return nil
}

// packObjects is the most objects checkPack lets a packfile hold.
func packObjects(lim archive.Limits, shallow bool) int64 {
	if shallow {
		return 4*int64(lim.MaxEntries) + 64
	}
	return 64*int64(lim.MaxEntries) + 64
}

// deltaHeader keeps the first bytes of a delta: two varints, the sizes of
// its base and of the object it makes.
type deltaHeader struct{ b []byte }

func (d *deltaHeader) Write(p []byte) (int, error) {
	if room := 20 - len(d.b); room > 0 {
		d.b = append(d.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (d *deltaHeader) targetSize() (int64, error) {
	b := d.b
	var sizes [2]int64
	for i := range sizes {
		var v int64
		var shift uint
		for {
			if len(b) == 0 || shift > 56 {
				return 0, errors.New("bad delta header")
			}
			c := b[0]
			b = b[1:]
			v |= int64(c&0x7f) << shift
			shift += 7
			if c&0x80 == 0 {
				break
			}
		}
		sizes[i] = v
	}
	return sizes[1], nil
}

// files checks the commit and lists the files at Path.
func (f *gitFetch) files(st *memory.Storage) ([]archive.File, error) {
	obj, err := st.EncodedObject(plumbing.CommitObject, f.want)
	if err != nil {
		return nil, fmt.Errorf("commit: %w: the server did not send commit %s", ErrCommit, f.want)
	}
	rd, err := obj.Reader()
	if err != nil {
		return nil, err
	}
	content, err := io.ReadAll(rd)
	rd.Close()
	if err != nil {
		return nil, err
	}
	if got := plumbing.ComputeHash(plumbing.CommitObject, content); got != f.want {
		return nil, fmt.Errorf("commit: %w: the commit received hashes to %s, not %s", ErrCommit, got, f.want)
	}
	commit, err := object.DecodeCommit(st, obj)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("commit %s: tree: %w", f.want, err)
	}
	// .gitattributes above Path apply to it too.
	dir := tree
	if f.o.Path != "" {
		parts := strings.Split(f.o.Path, "/")
		for i, el := range parts {
			if err := checkAttributes(st, dir, strings.Join(parts[:i], "/")); err != nil {
				return nil, err
			}
			e, err := dir.FindEntry(el)
			if err != nil || e.Mode != filemode.Dir {
				if err == nil && e.Mode == filemode.Submodule {
					return nil, fmt.Errorf("path: %w: %s is a submodule", ErrSubmodule, strings.Join(parts[:i+1], "/"))
				}
				return nil, fmt.Errorf("path: %w: %s is not a directory at commit %s", ErrPath, f.o.Path, f.want)
			}
			if dir, err = object.GetTree(st, e.Hash); err != nil {
				return nil, fmt.Errorf("path %s: %w", f.o.Path, err)
			}
		}
	}
	var files []archive.File
	err = f.walk(st, dir, "", &files)
	return files, err
}

// walk lists the entries of tree under prefix, refusing submodules and LFS.
func (f *gitFetch) walk(st *memory.Storage, tree *object.Tree, prefix string, files *[]archive.File) error {
	if err := checkAttributes(st, tree, path.Join(f.o.Path, prefix)); err != nil {
		return err
	}
	for _, e := range tree.Entries {
		p := e.Name
		if prefix != "" {
			p = prefix + "/" + e.Name
		}
		if len(*files) >= f.lim.MaxEntries {
			return &archive.Error{Entry: p, Rule: fmt.Sprintf("more than %d entries", f.lim.MaxEntries), Kind: archive.ErrTooLarge}
		}
		if e.Name == ".gitmodules" {
			return fmt.Errorf("%w: %s declares submodules", ErrSubmodule, path.Join(f.o.Path, p))
		}
		switch e.Mode {
		case filemode.Dir:
			sub, err := object.GetTree(st, e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			*files = append(*files, archive.File{Path: p, Mode: fs.ModeDir})
			if err := f.walk(st, sub, p, files); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			blob, err := object.GetBlob(st, e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if isLFSPointer(blob) {
				return fmt.Errorf("%w: %s is an LFS pointer file", ErrLFS, path.Join(f.o.Path, p))
			}
			mode := fs.FileMode(0o644)
			if e.Mode == filemode.Executable {
				mode = 0o755
			}
			*files = append(*files, archive.File{Path: p, Mode: mode, Size: blob.Size, Open: blob.Reader})
		case filemode.Symlink:
			blob, err := object.GetBlob(st, e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			target, err := readSmall(blob, 4096)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			*files = append(*files, archive.File{Path: p, Mode: fs.ModeSymlink, Target: string(target)})
		case filemode.Submodule:
			return fmt.Errorf("%w: %s is a submodule (commit %s of another repository)", ErrSubmodule, path.Join(f.o.Path, p), e.Hash)
		default:
			return &archive.Error{Entry: p, Rule: fmt.Sprintf("git file mode %s is not supported", e.Mode), Kind: archive.ErrUnsafe}
		}
	}
	return nil
}

// checkAttributes refuses a .gitattributes in tree (at dir) that sends
// files through the LFS filter.
func checkAttributes(st *memory.Storage, tree *object.Tree, dir string) error {
	e, err := tree.FindEntry(".gitattributes")
	if err != nil || !e.Mode.IsFile() {
		return nil
	}
	blob, err := object.GetBlob(st, e.Hash)
	if err != nil {
		return err
	}
	text, err := readSmall(blob, 1<<20)
	if err != nil {
		return fmt.Errorf("%s: %w", path.Join(dir, ".gitattributes"), err)
	}
	for line := range strings.SplitSeq(string(text), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, attr := range strings.Fields(line)[min(1, len(strings.Fields(line))):] {
			if attr == "filter=lfs" {
				return fmt.Errorf("%w: %s sends files through the LFS filter (%s)", ErrLFS, path.Join(dir, ".gitattributes"), line)
			}
		}
	}
	return nil
}

// lfsPointerPrefix starts every Git LFS pointer file.
const lfsPointerPrefix = "version https://git-lfs.github.com/spec/"

func isLFSPointer(b *object.Blob) bool {
	if b.Size > 1024 || b.Size < int64(len(lfsPointerPrefix)) {
		return false
	}
	head, err := readSmall(b, 1024)
	return err == nil && bytes.HasPrefix(head, []byte(lfsPointerPrefix))
}

// readSmall reads a blob of at most max bytes.
func readSmall(b *object.Blob, max int64) ([]byte, error) {
	if b.Size > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(io.LimitReader(rd, max))
}

// countingTransport counts the bytes of every response body of one fetch
// and fails the read that takes them past limit.
type countingTransport struct {
	next     http.RoundTripper
	limit    int64
	n        atomic.Int64
	exceeded atomic.Bool
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	c *countingTransport
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.c.n.Add(int64(n)) > b.c.limit {
		b.c.exceeded.Store(true)
		return 0, fmt.Errorf("max_payload: %w: the server sent more than %d bytes", ErrTooLarge, b.c.limit)
	}
	return n, err
}
