// Package gittest serves git repositories to tests over smart HTTPS on
// loopback: Debian's git http-backend, run as a CGI program behind an
// httptest TLS server, serving bare repositories a test builds with the
// git binary. A test without git (or its http-backend) is skipped through
// sandboxtest.Require (a failure under ANDROMEDA_CI_STRICT=1). It holds no
// test of its own and nothing but building, serving and addressing
// repositories.
package gittest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// A Server serves the bare repositories under Root as https://HOST/NAME.git.
type Server struct {
	*httptest.Server
	// Root holds the bare repositories (GIT_PROJECT_ROOT).
	Root string
	// CAFile is a PEM file holding the server's certificate, for a
	// node's sources.ca_file.
	CAFile string
	// Requests counts the requests served.
	Requests atomic.Int64

	home string
}

// Start starts a server that the test closes when it ends.
func Start(t testing.TB) *Server {
	t.Helper()
	git, err := exec.LookPath("git")
	sandboxtest.Require(t, err == nil, "git is not installed")
	out, err := exec.Command(git, "--exec-path").Output()
	sandboxtest.Require(t, err == nil, "git --exec-path failed")
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	_, err = os.Stat(backend)
	sandboxtest.Require(t, err == nil, "git-http-backend is not installed (Debian package git)")
	s := &Server{Root: t.TempDir(), home: t.TempDir()}
	h := &cgi.Handler{
		Path:   backend,
		Root:   "/",
		Logger: log.New(io.Discard, "", 0), // a client hanging up on purpose is no news
		Stderr: io.Discard,
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.Root,
			"GIT_HTTP_EXPORT_ALL=1",
			"HOME=" + s.home,
			"GIT_CONFIG_NOSYSTEM=1",
		},
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	s.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(s.CAFile, block, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// Host is the server's host:port, for allowed_sources.
func (s *Server) Host() string {
	u, _ := url.Parse(s.URL)
	return u.Host
}

// RepoURL is the https URL of the repository name.
func (s *Server) RepoURL(name string) string { return s.URL + "/" + name + ".git" }

// TLSClient returns a client that trusts the server.
func (s *Server) TLSClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// A Repo is a work tree whose branches and tags Push publishes as a bare
// repository of the server.
type Repo struct {
	t    testing.TB
	s    *Server
	Dir  string // the work tree
	Bare string // the served bare repository
}

// NewRepo makes an empty repository name (branch main).
func (s *Server) NewRepo(t testing.TB, name string) *Repo {
	t.Helper()
	r := &Repo{t: t, s: s, Dir: t.TempDir(), Bare: filepath.Join(s.Root, name+".git")}
	r.Git("init", "-q", "-b", "main")
	r.run(s.Root, "init", "-q", "--bare", "-b", "main", r.Bare)
	return r
}

// Git runs git in the work tree and returns its trimmed output.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	return r.run(r.Dir, args...)
}

func (r *Repo) run(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", "-c", "protocol.file.allow=always"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+r.s.home, "GIT_CONFIG_NOSYSTEM=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Write writes a file of the work tree (mode 0o755 makes it executable).
func (r *Repo) Write(rel, content string, mode os.FileMode) {
	r.t.Helper()
	p := filepath.Join(r.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		r.t.Fatal(err)
	}
}

// Commit commits everything in the work tree, pushes, and returns the
// commit's hash.
func (r *Repo) Commit(msg string) string {
	r.t.Helper()
	r.Git("add", "-A")
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	r.Push()
	return r.Git("rev-parse", "HEAD")
}

// Push publishes every branch and tag, moving them where they moved.
func (r *Repo) Push() {
	r.t.Helper()
	r.Git("push", "-q", "--force", r.Bare, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")
}

// Config sets a config key of the served repository, such as
// uploadpack.allowAnySHA1InWant.
func (r *Repo) Config(key, value string) {
	r.t.Helper()
	r.run(r.Bare, "config", key, value)
}
