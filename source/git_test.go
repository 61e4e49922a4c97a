package source

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/internal/gittest"
)

// serviceRepo makes a repository holding a service at svc/ (a manifest, a
// module, an executable, a symlink and a nested file) beside other files,
// and returns it with the digest of svc/ as a checkout holds it.
func serviceRepo(t *testing.T, s *gittest.Server, name string) (*gittest.Repo, string) {
	t.Helper()
	r := s.NewRepo(t, name)
	r.Write("README.md", "not part of the service\n", 0o644)
	r.Write("svc/andromeda.yaml", "name: x\nversion: 1.0.0\nruntime: {entry: main.wasm}\n", 0o644)
	r.Write("svc/main.wasm", "\x00asm pretend", 0o644)
	r.Write("svc/bin/run", "#!/bin/sh\necho hi\n", 0o755)
	r.Write("svc/deep/a/b.txt", "b\n", 0o644)
	if err := os.Symlink("bin/run", filepath.Join(r.Dir, "svc", "run")); err != nil {
		t.Fatal(err)
	}
	digest, err := archive.DigestDir(filepath.Join(r.Dir, "svc"))
	if err != nil {
		t.Fatal(err)
	}
	return r, digest
}

func gitOpts(s *gittest.Server, name, commit, digest string) GitOptions {
	return GitOptions{
		Repo: s.RepoURL(name), Commit: commit, Path: "svc", Digest: digest,
		Client: s.TLSClient(), Allowed: []string{s.Host()},
	}
}

// TestFetchGitDigest: the archive FetchGit returns has the digest
// archive.DigestDir gives a checkout of the same files, so an author pins
// what they see; and it unpacks to those files.
func TestFetchGitDigest(t *testing.T) {
	s := gittest.Start(t)
	r, digest := serviceRepo(t, s, "svc")
	commit := r.Commit("first")
	r.Git("tag", "-a", "-m", "v1", "v1.0.0")
	r.Push()
	ctx := context.Background()
	for _, tc := range []struct{ name, ref string }{{"advertised tip", ""}, {"annotated tag", "v1.0.0"}, {"branch", "main"}, {"full ref", "refs/heads/main"}} {
		t.Run(tc.name, func(t *testing.T) {
			o := gitOpts(s, "svc", commit, digest)
			o.Ref = tc.ref
			data, err := FetchGit(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			info, err := archive.Inspect(bytes.NewReader(data), archive.Limits{})
			if err != nil || info.Digest != digest {
				t.Fatalf("Inspect = %+v, %v; want digest %s", info, err, digest)
			}
			out := filepath.Join(t.TempDir(), "out")
			if _, err := archive.Unpack(bytes.NewReader(data), out, archive.Limits{}); err != nil {
				t.Fatal(err)
			}
			if got, err := os.Readlink(filepath.Join(out, "run")); err != nil || got != "bin/run" {
				t.Errorf("symlink run = %q, %v", got, err)
			}
			if fi, err := os.Stat(filepath.Join(out, "bin", "run")); err != nil || fi.Mode()&0o100 == 0 {
				t.Errorf("bin/run = %v, %v; want executable", fi, err)
			}
		})
	}
	// The whole repository, at the root.
	rootDigest, err := archive.DigestDir(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	o := gitOpts(s, "svc", commit, rootDigest)
	o.Path = ""
	if _, err := FetchGit(ctx, o); err != nil {
		t.Fatalf("FetchGit of the root = %v", err)
	}
}

func TestFetchGitRefusals(t *testing.T) {
	s := gittest.Start(t)
	ctx := context.Background()
	r, digest := serviceRepo(t, s, "svc")
	first := r.Commit("first")
	r.Git("tag", "v1")
	r.Write("svc/main.wasm", "\x00asm changed", 0o644)
	second := r.Commit("second")
	r.Git("tag", "-f", "v1") // v1 moves to the second commit
	r.Push()

	// A submodule, with its .gitmodules, and a bare gitlink.
	lib := s.NewRepo(t, "lib")
	lib.Write("lib.txt", "lib\n", 0o644)
	lib.Commit("lib")
	sm, smDigest := serviceRepo(t, s, "with-submodule")
	sm.Git("-c", "protocol.file.allow=always", "submodule", "-q", "add", lib.Bare, "svc/lib")
	smCommit := sm.Commit("add a submodule")
	gl, glDigest := serviceRepo(t, s, "with-gitlink")
	gl.Git("add", "-A")
	gl.Git("update-index", "--add", "--cacheinfo", "160000,"+first+",svc/vendored")
	gl.Git("commit", "-q", "-m", "add a gitlink") // not Commit: add -A would drop the gitlink
	gl.Push()
	glCommit := gl.Git("rev-parse", "HEAD")

	// Git LFS: an attribute above the path, and a pointer file.
	lfsAttr, lfsDigest := serviceRepo(t, s, "lfs-attr")
	lfsAttr.Write(".gitattributes", "*.wasm filter=lfs diff=lfs merge=lfs -text\n", 0o644)
	lfsAttrCommit := lfsAttr.Commit("lfs")
	lfsPtr, _ := serviceRepo(t, s, "lfs-pointer")
	lfsPtr.Write("svc/main.wasm", "version https://git-lfs.github.com/spec/v1\noid sha256:"+strings.Repeat("a", 64)+"\nsize 12345\n", 0o644)
	ptrDigest, _ := archive.DigestDir(filepath.Join(lfsPtr.Dir, "svc"))
	lfsPtrCommit := lfsPtr.Commit("pointer")

	// A repository larger than the cap, of incompressible bytes.
	big, _ := serviceRepo(t, s, "big")
	noise := make([]byte, 512<<10)
	rand.Read(noise)
	big.Write("svc/noise.bin", string(noise), 0o644)
	bigDigest, _ := archive.DigestDir(filepath.Join(big.Dir, "svc"))
	bigCommit := big.Commit("big")

	secondDigest, _ := archive.DigestDir(filepath.Join(r.Dir, "svc"))
	for _, tc := range []struct {
		name   string
		mutate func(o *GitOptions)
		want   error
		text   string
	}{
		{"ref moved", func(o *GitOptions) { o.Commit, o.Ref = first, "v1" }, ErrRef, "v1 resolves to " + second + ", the manifest pins " + first + ": the ref moved"},
		{"ref missing", func(o *GitOptions) { o.Ref = "v9" }, ErrRef, "the server has no refs/tags/v9 or refs/heads/v9"},
		{"commit not advertised", func(o *GitOptions) { o.Commit = first }, ErrCommit, "no ref the server advertises points at " + first},
		{"commit not in repository", func(o *GitOptions) { o.Commit = strings.Repeat("ab", 20) }, ErrCommit, ""},
		{"digest mismatch", func(o *GitOptions) { o.Digest = digest }, ErrDigest, "the files at svc are " + secondDigest + ", the manifest declares " + digest},
		{"host not allowed", func(o *GitOptions) { o.Allowed = []string{"github.com"} }, ErrNotAllowed, "allowed_sources"},
		{"credentials", func(o *GitOptions) { o.Repo = strings.Replace(o.Repo, "https://", "https://u:p@", 1) }, nil, "credentials in the URL"},
		{"path not a directory", func(o *GitOptions) { o.Path = "svc/main.wasm" }, ErrPath, "svc/main.wasm is not a directory"},
		{"path missing", func(o *GitOptions) { o.Path = "nope" }, ErrPath, "nope is not a directory"},
		{"submodule", func(o *GitOptions) {
			o.Repo, o.Commit, o.Digest, o.Path = s.RepoURL("with-submodule"), smCommit, smDigest, ""
		}, ErrSubmodule, ".gitmodules declares submodules"},
		{"submodule in path", func(o *GitOptions) {
			o.Repo, o.Commit, o.Digest = s.RepoURL("with-submodule"), smCommit, smDigest
		}, ErrSubmodule, "svc/lib is a submodule"},
		{"gitlink", func(o *GitOptions) {
			o.Repo, o.Commit, o.Digest = s.RepoURL("with-gitlink"), glCommit, glDigest
		}, ErrSubmodule, "svc/vendored is a submodule"},
		{"lfs attribute", func(o *GitOptions) {
			o.Repo, o.Commit, o.Digest = s.RepoURL("lfs-attr"), lfsAttrCommit, lfsDigest
		}, ErrLFS, ".gitattributes sends files through the LFS filter"},
		{"lfs pointer", func(o *GitOptions) {
			o.Repo, o.Commit, o.Digest = s.RepoURL("lfs-pointer"), lfsPtrCommit, ptrDigest
		}, ErrLFS, "svc/main.wasm is an LFS pointer file"},
		{"oversized", func(o *GitOptions) {
			o.Repo, o.Commit, o.Digest = s.RepoURL("big"), bigCommit, bigDigest
			o.Limits.MaxCompressed = 256 << 10
		}, ErrTooLarge, "max_payload"},
		{"too many files", func(o *GitOptions) { o.Digest, o.Limits.MaxEntries = secondDigest, 3 }, archive.ErrTooLarge, "more than 3 entries"},
		{"file too large", func(o *GitOptions) { o.Digest, o.Limits.MaxFileSize = secondDigest, 8 }, archive.ErrTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := gitOpts(s, "svc", second, secondDigest)
			tc.mutate(&o)
			before := s.Requests.Load()
			data, err := FetchGit(ctx, o)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("FetchGit = %d bytes, %v; want %v with %q", len(data), err, tc.want, tc.text)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "source ") {
				t.Errorf("error %q does not name the source", err)
			}
			if errors.Is(err, ErrNotAllowed) && s.Requests.Load() != before {
				t.Errorf("a refused host was asked %d times", s.Requests.Load()-before)
			}
		})
	}
	// The same bigger repository fits a bigger cap: the cap is per fetch.
	o := gitOpts(s, "big", bigCommit, bigDigest)
	o.Limits.MaxCompressed = 4 << 20
	if _, err := FetchGit(ctx, o); err != nil {
		t.Fatalf("FetchGit under a 4 MiB cap = %v", err)
	}

	// A server that allows any commit by hash sends one no ref points at.
	r.Config("uploadpack.allowAnySHA1InWant", "true")
	o = gitOpts(s, "svc", first, digest)
	if _, err := FetchGit(ctx, o); err != nil {
		t.Fatalf("FetchGit of an unadvertised commit from a server that allows it = %v", err)
	}
	o.Commit = strings.Repeat("ab", 20)
	if _, err := FetchGit(ctx, o); !errors.Is(err, ErrCommit) {
		t.Fatalf("FetchGit of a commit the repository lacks = %v, want ErrCommit", err)
	}
}

// TestFetchGitConcurrentCaps: fetches running at once keep their own caps.
func TestFetchGitConcurrentCaps(t *testing.T) {
	s := gittest.Start(t)
	r, _ := serviceRepo(t, s, "big")
	noise := make([]byte, 256<<10)
	rand.Read(noise)
	r.Write("svc/noise.bin", string(noise), 0o644)
	digest, _ := archive.DigestDir(filepath.Join(r.Dir, "svc"))
	commit := r.Commit("big")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			o := gitOpts(s, "big", commit, digest)
			o.Limits.MaxCompressed = 4 << 20
			if i%2 == 1 {
				o.Limits.MaxCompressed = 64 << 10
			}
			_, errs[i] = FetchGit(context.Background(), o)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && err != nil || i%2 == 1 && !errors.Is(err, ErrTooLarge) {
			t.Errorf("fetch %d = %v", i, err)
		}
	}
}

// TestFetchGitTimeout: a server that never answers is given up on at the
// time cap, with the reason.
func TestFetchGitTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	u, _ := url.Parse(srv.URL)
	o := GitOptions{
		Repo: srv.URL + "/x.git", Commit: strings.Repeat("ab", 20), Digest: "sha256:" + strings.Repeat("0", 64),
		Client: srv.Client(), Allowed: []string{u.Host}, Timeout: 200 * time.Millisecond,
	}
	start := time.Now()
	_, err := FetchGit(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "timeout: fetch took longer than 200ms") {
		t.Fatalf("FetchGit = %v, want the timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("FetchGit took %s", d)
	}
}

// FuzzCheckPack: whatever a server sends as a packfile, the check before
// parsing returns without panicking or allocating beyond its caps.
func FuzzCheckPack(f *testing.F) {
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00"))
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x01\x95\x0a\x78\x9c\x01\x00\x00\xff\xff\x00\x00\x00\x01"))
	f.Add([]byte("PACK\x00\x00\x00\x02\xff\xff\xff\xff\x7f"))
	f.Add([]byte("not a pack"))
	f.Fuzz(func(t *testing.T, pack []byte) {
		lim, _ := gitLimits(archive.Limits{MaxSize: 1 << 20, MaxFileSize: 1 << 20})
		checkPack(pack, lim, true)
		checkPack(pack, lim, false)
	})
}

// emptyBlobsPack is a packfile of n empty blobs: a few bytes each, nothing
// to inflate.
func emptyBlobsPack(n int) []byte {
	b := []byte{'P', 'A', 'C', 'K', 0, 0, 0, 2, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	for range n {
		// type blob, size 0; then zlib of nothing.
		b = append(b, 0x30, 0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01)
	}
	return append(b, make([]byte, 20)...)
}

// TestCheckPackObjectCount: a packfile of many empty objects (small on the
// wire, nothing to inflate, but each stored in memory) is refused before
// parsing when it holds more objects than a tree of at most max_files
// entries needs, more loosely when the fetch could not be at depth 1.
func TestCheckPackObjectCount(t *testing.T) {
	lim, _ := gitLimits(archive.Limits{MaxEntries: 10})
	for _, c := range []struct {
		n       int
		shallow bool
		refused bool
	}{
		{30, true, false},
		{4*10 + 64, true, false},
		{4*10 + 65, true, true},
		{200, false, false},
		{64*10 + 65, false, true},
	} {
		err := checkPack(emptyBlobsPack(c.n), lim, c.shallow)
		if !c.refused {
			if err != nil {
				t.Errorf("checkPack(%d empty blobs, shallow %v) = %v, want nil", c.n, c.shallow, err)
			}
			continue
		}
		if !errors.Is(err, archive.ErrTooLarge) || !strings.Contains(err.Error(), "upload.max_files") || !strings.Contains(err.Error(), "at most 10 files") {
			t.Errorf("checkPack(%d empty blobs, shallow %v) = %v, want a refusal naming upload.max_files", c.n, c.shallow, err)
		}
	}
}

// TestFetchGitRedirect: the first request may be redirected to another
// allowed host, never to one outside allowed_sources.
func TestFetchGitRedirect(t *testing.T) {
	s := gittest.Start(t)
	r, digest := serviceRepo(t, s, "svc")
	commit := r.Commit("first")
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, s.URL+"/svc.git"+strings.TrimPrefix(req.URL.RequestURI(), "/moved.git"), http.StatusMovedPermanently)
	}))
	defer front.Close()
	pool := s.TLSClient().Transport.(*http.Transport).TLSClientConfig.RootCAs
	pool.AddCert(front.Certificate())
	u, _ := url.Parse(front.URL)
	o := gitOpts(s, "svc", commit, digest)
	o.Repo = front.URL + "/moved.git"
	o.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	o.Allowed = []string{u.Host, s.Host()}
	if _, err := FetchGit(context.Background(), o); err != nil {
		t.Fatalf("FetchGit through a redirect to an allowed host = %v", err)
	}
	o.Allowed = []string{u.Host}
	before := s.Requests.Load()
	_, err := FetchGit(context.Background(), o)
	if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "redirect to "+s.URL) {
		t.Fatalf("FetchGit redirected to a host not allowed = %v", err)
	}
	if s.Requests.Load() != before {
		t.Errorf("the host not allowed was asked anyway")
	}
}
