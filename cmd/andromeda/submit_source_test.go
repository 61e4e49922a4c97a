package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/internal/gittest"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestSubmitGitSource: andromeda submit given a manifest file naming a git
// repository at a pinned commit sends the manifest alone; the node fetches,
// admits and deploys it. A manifest naming no source is a usage error.
func TestSubmitGitSource(t *testing.T) {
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the example service")
	s := gittest.Start(t)
	repo := s.NewRepo(t, "greeter")
	src := filepath.Join("..", "..", "examples", "greeter")
	y, err := os.ReadFile(filepath.Join(src, "andromeda.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	repo.Write("andromeda.yaml", string(y), 0o644)
	if err := gobuild.Wasm(context.Background(), src, filepath.Join(repo.Dir, "main.wasm"), gobuild.Reactor); err != nil {
		t.Fatal(err)
	}
	digest, err := archive.DigestDir(repo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	commit := repo.Commit("greeter")

	p, err := policy.Parse([]byte("allowed_sources: [\"" + s.Host() + "\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, env := startNode(t, func(c *node.Config) { c.Policy = p; c.Sources.CAFile = s.CAFile })

	file := filepath.Join(t.TempDir(), "greeter.yaml")
	os.WriteFile(file, []byte(string(y)+"\nsource: {git: \""+s.RepoURL("greeter")+"\", commit: "+commit+", ref: main, digest: \""+digest+"\"}\n"), 0o644)
	out, stderr, err := runCLI(t, env, "submit", file)
	if err != nil {
		t.Fatalf("submit %s: %v\n%s", file, err, stderr)
	}
	if !strings.Contains(out, "greeter 1.0.0 submitted and deployed") || !strings.Contains(out, digest) || !strings.Contains(stderr, "the node fetches "+s.RepoURL("greeter")+" at "+commit) {
		t.Fatalf("submit printed:\n%s\n%s", out, stderr)
	}

	plain := filepath.Join(t.TempDir(), "plain.yaml")
	os.WriteFile(plain, y, 0o644)
	if _, _, err := runCLI(t, env, "submit", plain); err == nil || !strings.Contains(err.Error(), "must name its source") {
		t.Fatalf("submit of a manifest without a source = %v", err)
	}
}
