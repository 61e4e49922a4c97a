package node_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/internal/gittest"
	"github.com/andromeda-runner/andromeda/node"
)

// copyTree copies the regular files of dir (not below) into the work tree
// of r at sub.
func copyTree(t *testing.T, r *gittest.Repo, dir, sub string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		r.Write(sub+"/"+e.Name(), string(b), 0o644)
	}
}

// TestGitSource: a service in a repository on a loopback git server over
// HTTPS, trusted through sources.ca_file, is fetched at its pinned commit,
// admitted and run; a moved ref, a commit the repository lacks, a host
// outside allowed_sources, an oversized repository and one with a
// submodule are each refused with their reason and leave nothing behind.
func TestGitSource(t *testing.T) {
	ctx := context.Background()
	s := gittest.Start(t)
	greeter := example(t, "greeter")

	repo := s.NewRepo(t, "services")
	repo.Write("README.md", "services\n", 0o644)
	copyTree(t, repo, greeter, "greeter")
	digest, err := archive.DigestDir(filepath.Join(repo.Dir, "greeter"))
	if err != nil {
		t.Fatal(err)
	}
	first := repo.Commit("greeter 1.0.0")
	repo.Git("tag", "-a", "-m", "release", "v1.0.0")
	repo.Push()

	// Oversized: the greeter beside 3 MiB of incompressible bytes.
	big := s.NewRepo(t, "big")
	copyTree(t, big, greeter, "greeter")
	noise := make([]byte, 3<<20)
	rand.Read(noise)
	big.Write("greeter/noise.bin", string(noise), 0o644)
	bigDigest, _ := archive.DigestDir(filepath.Join(big.Dir, "greeter"))
	bigCommit := big.Commit("big")

	// A submodule inside the service's directory.
	lib := s.NewRepo(t, "lib")
	lib.Write("lib.txt", "lib\n", 0o644)
	lib.Commit("lib")
	sub := s.NewRepo(t, "with-submodule")
	copyTree(t, sub, greeter, "greeter")
	subDigest, _ := archive.DigestDir(filepath.Join(sub.Dir, "greeter"))
	sub.Git("-c", "protocol.file.allow=always", "submodule", "-q", "add", lib.Bare, "greeter/lib")
	subCommit := sub.Commit("with a submodule")

	// The greeter's compressed archive is well under 3 MiB; the noise is not.
	n := startNode(t,
		withPolicy(t, "allowed_sources: [\""+s.Host()+"\"]\nmax_payload: 3Mi\n"),
		func(c *node.Config) { c.Sources.CAFile = s.CAFile })

	var m map[string]any
	y, _ := os.ReadFile(filepath.Join(greeter, "andromeda.yaml"))
	if err := yaml.Unmarshal(y, &m); err != nil {
		t.Fatal(err)
	}
	submit := func(version string, src map[string]any) (api.SubmitResult, error) {
		m["version"] = version
		m["source"] = src
		body, _ := json.Marshal(m)
		return n.op.SubmitSource(ctx, body, api.SubmitOptions{})
	}

	res, err := submit("1.0.0", map[string]any{"git": s.RepoURL("services"), "commit": first, "ref": "v1.0.0", "path": "greeter", "digest": digest})
	if err != nil || res.Service.Digest != digest || res.Service.Status != "deployed" {
		t.Fatalf("SubmitSource = %+v, %v", res.Service, err)
	}
	run, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"Ada"}`))
	if err != nil || run.Outcome != "ok" {
		t.Fatalf("fire = %+v, %v", run, err)
	}

	// The tag moves to a new commit; the manifest still pins the first.
	repo.Write("greeter/NOTES", "changed\n", 0o644)
	second := repo.Commit("notes")
	repo.Git("tag", "-f", "-a", "-m", "moved", "v1.0.0")
	repo.Push()

	before := snapshotData(t, n)
	for _, tc := range []struct {
		name string
		src  map[string]any
		want string
	}{
		{"moved ref", map[string]any{"git": s.RepoURL("services"), "commit": first, "ref": "v1.0.0", "path": "greeter", "digest": digest},
			"ref: ref does not match: v1.0.0 resolves to " + second + ", the manifest pins " + first + ": the ref moved"},
		{"commit not in the repository", map[string]any{"git": s.RepoURL("services"), "commit": strings.Repeat("ab", 20), "path": "greeter", "digest": digest},
			"commit: commit not fetched: no ref the server advertises points at " + strings.Repeat("ab", 20)},
		{"digest mismatch", map[string]any{"git": s.RepoURL("services"), "commit": second, "path": "greeter", "digest": digest},
			"digest: digest mismatch: the files at greeter are sha256:"},
		{"host not allowed", map[string]any{"git": "https://git.elsewhere.invalid/org/services.git", "commit": first, "path": "greeter", "digest": digest},
			"host git.elsewhere.invalid of source.git https://git.elsewhere.invalid/org/services.git is not in allowed_sources"},
		{"oversized", map[string]any{"git": s.RepoURL("big"), "commit": bigCommit, "path": "greeter", "digest": bigDigest},
			"max_payload: too large: the server sent more than 3145728 bytes"},
		{"submodule", map[string]any{"git": s.RepoURL("with-submodule"), "commit": subCommit, "path": "greeter", "digest": subDigest},
			"submodules are not supported: greeter/lib is a submodule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requests := s.Requests.Load()
			_, err := submit("1.0.1", tc.src)
			if status(err) != 422 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SubmitSource = %v (status %d), want 422 with %q", err, status(err), tc.want)
			}
			if tc.name == "host not allowed" && s.Requests.Load() != requests {
				t.Errorf("a host outside allowed_sources was fetched from")
			}
			if after := snapshotData(t, n); after != before {
				t.Errorf("a refused source left something behind:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
	svc, err := n.op.Service(ctx, "greeter")
	if err != nil || svc.Version != "1.0.0" {
		t.Fatalf("after the refusals greeter = %+v, %v; want 1.0.0 still", svc, err)
	}
}

// TestGitSourceCAFile: a sources.ca_file that cannot be read or holds no
// certificate stops the node at New, naming the key.
func TestGitSourceCAFile(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	for _, file := range []string{filepath.Join(t.TempDir(), "missing.pem"), junk} {
		cfg := node.DefaultConfig()
		cfg.Data = t.TempDir()
		cfg.Sources.CAFile = file
		if _, err := node.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "sources.ca_file") {
			t.Errorf("New with ca_file %s = %v, want a sources.ca_file error", file, err)
		}
	}
}
