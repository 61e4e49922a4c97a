package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestCompletionScripts loads each completion script in its shell: any
// output on standard error or a non-zero exit fails. Fish also completes
// a command line through this binary, standing in for andromeda.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	script := func(shell string) string {
		t.Helper()
		out, stderr, err := runCLI(t, nil, "completion", shell)
		if err != nil || stderr != "" || out == "" {
			t.Fatalf("andromeda completion %s: %v, stderr %q", shell, err, stderr)
		}
		file := filepath.Join(dir, "andromeda."+shell)
		if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return file
	}
	// andromeda on PATH is this test binary, run as the CLI.
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := "#!/bin/sh\n" + asCLI + "=1 exec '" + bin + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	shell := func(t *testing.T, name string, args ...string) string {
		t.Helper()
		_, err := exec.LookPath(name)
		sandboxtest.Require(t, err == nil, name+" is needed to check its completion script")
		var out, stderr bytes.Buffer
		cmd := exec.Command(name, args...)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+dir)
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Fatalf("%s %q: %v\nstderr:\n%s", name, args, err, stderr.String())
		}
		return out.String()
	}
	t.Run("bash", func(t *testing.T) {
		if out := shell(t, "bash", "-c", "source "+script("bash")+" && complete -p andromeda"); !strings.Contains(out, "andromeda") {
			t.Errorf("complete -p andromeda: %q", out)
		}
	})
	t.Run("zsh", func(t *testing.T) { shell(t, "zsh", "-n", script("zsh")) })
	t.Run("fish", func(t *testing.T) {
		file := script("fish")
		shell(t, "fish", "--no-execute", file)
		out := shell(t, "fish", "--no-config", "-c", "source "+file+"; complete -C 'andromeda ins'")
		if !strings.HasPrefix(out, "inspect\t") {
			t.Errorf("fish: complete -C 'andromeda ins' = %q, want inspect", out)
		}
	})
}

// TestCompleteServiceNames completes service names from a node, and
// nothing, quietly, when no node answers.
func TestCompleteServiceNames(t *testing.T) {
	n, env := startNode(t, nil)
	if _, stderr, err := runCLI(t, env, "submit", echoService(t)); err != nil {
		t.Fatalf("submit: %v\n%s", err, stderr)
	}
	const names, dirs = ":4\n", ":16\n" // cobra's directives: no files; directories
	for _, tc := range []struct {
		env  map[string]string
		args string
		want string // the completion output
	}{
		{env, "inspect ", "echo\t1.0.0 deployed\n" + names},
		{env, "fire e", "echo\t1.0.0 deployed\n" + names},
		{env, "fire x", names},
		{env, "fire echo ", names},
		{env, "runs --limit 5 ", "echo\t1.0.0 deployed\n" + names},
		{env, "deps ls ", "echo\t1.0.0 deployed\n" + names},
		{env, "rm --node " + n.Addr() + " ", "echo\t1.0.0 deployed\n" + names},
		{map[string]string{"ANDROMEDA_DATA": env["ANDROMEDA_DATA"]}, "inspect --node " + n.Addr() + " ", "echo\t1.0.0 deployed\n" + names},
		{map[string]string{"ANDROMEDA_ADDR": "127.0.0.1:1", "ANDROMEDA_TOKEN": "t"}, "inspect ", names},
		{map[string]string{"ANDROMEDA_ADDR": n.Addr(), "ANDROMEDA_TOKEN": "wrong"}, "inspect ", names},
		{map[string]string{"ANDROMEDA_ADDR": n.Addr(), "ANDROMEDA_DATA": t.TempDir()}, "inspect ", names}, // no token
		{env, "token create --role ", "submitter\noperator\nruntime\n" + names},
		{env, "submit ", dirs},
		{env, "help stor", "store\tCheck, back up or restore a stopped node's store\n" + names},
	} {
		args := append([]string{"__complete"}, strings.Split(tc.args, " ")...)
		out, _, err := runCLI(t, tc.env, args...)
		if err != nil || out != tc.want {
			t.Errorf("complete %q: %v, %q; want %q", tc.args, err, out, tc.want)
		}
	}
}

// echoService is a service directory holding the wasm driver's self-test
// module: nothing to build.
func echoService(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	wasm, err := os.ReadFile(filepath.Join("..", "..", "sandbox", "wasm", "echo.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "echo.wasm"), wasm, 0o644)
	os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte("name: echo\nversion: 1.0.0\n"+
		"runtime: {driver: wasm, language: wasm, entry: echo.wasm}\nmode: command\ntriggers:\n  - {kind: manual}\n"+
		"resources: {memory: 16Mi, timeout: 5s, concurrency: 4}\ncapabilities: {network: none}\n"), 0o644)
	return dir
}
