package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/node"
)

// TestFilesCLI: andromeda cp moves files into and out of a service's
// volume (a file, standard input and output, a whole directory), files
// lists volumes and directories and removes, and paths outside a volume
// or a bad pair of arguments are refused with their words.
func TestFilesCLI(t *testing.T) {
	t.Parallel()
	n, env := startNode(t, nil)
	svc := t.TempDir()
	wasm, err := os.ReadFile(filepath.Join("..", "..", "sandbox", "wasm", "echo.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(svc, "main.wasm"), wasm, 0o644)
	os.WriteFile(filepath.Join(svc, "andromeda.yaml"), []byte("name: keeper\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: main.wasm}\nmode: command\nvolumes: [{name: out, path: /out, size: 1Mi}]\n"), 0o644)
	tgz, err := archive.Pack(svc)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := node.OperatorToken(env["ANDROMEDA_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(n.Addr(), tok).Submit(context.Background(), tgz); err != nil {
		t.Fatal(err)
	}

	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "a.txt"), []byte("alpha"), 0o644)
	must := func(want string, args ...string) string {
		t.Helper()
		out, errOut, err := runCLI(t, env, args...)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("andromeda %s = %v\n%s%s\nwant %q", strings.Join(args, " "), err, out, errOut, want)
		}
		return out
	}
	must("copied 1 file(s), 5 bytes, to keeper:/out/dir/a.txt", "cp", filepath.Join(local, "a.txt"), "keeper:/out/dir/a.txt")
	if out, err := runCLIIn(t, env, "beta!", "cp", "-", "keeper:/out/b.txt"); err != nil || !strings.Contains(out, "5 bytes") {
		t.Fatalf("cp from stdin = %v %s", err, out)
	}
	must("out   /out  1048576", "files", "keeper")
	out := must("b.txt", "files", "keeper:/out")
	if !strings.Contains(out, "dir ") {
		t.Fatalf("listing has no dir:\n%s", out)
	}
	must("copied 1 file(s)", "cp", "keeper:/out/dir/a.txt", filepath.Join(local, "got.txt"))
	if b, _ := os.ReadFile(filepath.Join(local, "got.txt")); string(b) != "alpha" {
		t.Fatalf("copied out %q", b)
	}
	must("copied 2 file(s), 10 bytes", "cp", "keeper:/out/", filepath.Join(local, "all"))
	if b, _ := os.ReadFile(filepath.Join(local, "all", "dir", "a.txt")); string(b) != "alpha" {
		t.Fatalf("directory copy: dir/a.txt = %q", b)
	}
	must("beta!", "cp", "keeper:/out/b.txt", "-")
	must("removed keeper:/out/b.txt", "files", "keeper:/out/b.txt", "--rm")

	// A directory of more entries than the node lists: ls says so, and a
	// copy of it is refused rather than made without the rest.
	many := filepath.Join(env["ANDROMEDA_DATA"], "volumes", "keeper", "out", "many")
	if err := os.MkdirAll(many, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 10005 {
		if err := os.WriteFile(filepath.Join(many, fmt.Sprintf("f%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must("(the first 10000 of 10005 entries, by name)", "files", "keeper:/out/many")
	if _, _, err := runCLI(t, env, "cp", "keeper:/out/", filepath.Join(local, "cut")); err == nil || !strings.Contains(err.Error(), "/out/many holds 10005 entries, more than the node lists (10000)") {
		t.Errorf("cp of a directory holding a listing cut short = %v, want refused", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cp", "keeper:/out/b.txt", filepath.Join(local, "x")}, "no such file in volume out"},
		{[]string{"cp", "keeper:/etc/passwd", filepath.Join(local, "x")}, "not in a volume of service keeper (/out)"},
		{[]string{"cp", filepath.Join(local, "a.txt"), "keeper:/out"}, "is volume out itself"},
		{[]string{"cp", filepath.Join(local, "a.txt"), filepath.Join(local, "b.txt")}, "one of SRC and DST must be NAME:/PATH"},
		{[]string{"files", "keeper:/out", "--rm"}, "is volume out itself"},
	} {
		_, _, err := runCLI(t, env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("andromeda %s = %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
