package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/bench/goplugin"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// guests is where the process driver's conformance guests live; their
// echo is the same as the bench's Go worker's.
const guests = "../sandbox/process/testdata/guests"

// build builds the bench's Go program pkg (once) and returns its path.
func (e *env) build(pkg string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if b, ok := e.built[pkg]; ok {
		return b.path, b.err
	}
	name := filepath.Base(pkg)
	out := filepath.Join(e.dir, "bin", name, name)
	err := sandboxtest.GoBuild(pkg, out, []string{"CGO_ENABLED=0"})
	if err == nil {
		err = os.Chmod(filepath.Dir(out), 0o755)
	}
	e.built[pkg] = builtBin{out, err}
	return out, err
}

// processRow is a warm invocation of the process driver's worker for
// lang (Deployment.Invoke: namespaces, cgroup, seccomp, the runtime
// protocol over pipes, usage from the cgroup).
func processRow(lang string) func(ctx context.Context, e *env) (func() error, func(), error) {
	return func(ctx context.Context, e *env) (func() error, func(), error) {
		if os.Geteuid() != 0 {
			return nil, nil, errors.New("the process driver's sandbox needs root")
		}
		var dir, entry string
		switch lang {
		case process.LangExec:
			bin, err := e.build("./goplugin/echoworker")
			if err != nil {
				return nil, nil, err
			}
			dir, entry = filepath.Dir(bin), filepath.Base(bin)
		case process.LangNode:
			dir, entry = filepath.Join(guests, "node"), "index.js"
		case process.LangPython:
			dir, entry = filepath.Join(guests, "python"), "main.py"
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, nil, err
		}
		d := process.New(process.Config{
			WorkDir:      filepath.Join(e.dir, "work-"+lang),
			CgroupParent: "/andromeda-bench",
			Logger:       e.log,
		})
		dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		dep, err := d.Deploy(dctx, sandbox.Spec{Service: "bench-" + lang, Dir: abs, Entry: entry, Language: lang, Limits: sandbox.Limits{Concurrency: 1}})
		if err != nil {
			d.Close()
			return nil, nil, err
		}
		call := func() error {
			exit, err := dep.Invoke(ctx, input)
			if err != nil {
				return err
			}
			if exit.Outcome != sandbox.OK || !bytes.Contains(exit.Output, []byte(`"topic":"echo"`)) {
				return fmt.Errorf("%s worker answered %s %q (%s)", lang, exit.Outcome, exit.Output, exit.Detail)
			}
			return nil
		}
		return call, func() { dep.Stop(ctx); d.Close() }, nil
	}
}

// goPluginRow is a call of the same echo through HashiCorp go-plugin, to
// an ordinary child process, over net/rpc or gRPC.
func goPluginRow(version int) func(ctx context.Context, e *env) (func() error, func(), error) {
	return func(ctx context.Context, e *env) (func() error, func(), error) {
		bin, err := e.build("./goplugin/echoplugin")
		if err != nil {
			return nil, nil, err
		}
		p, stop, err := goplugin.Start(bin, version)
		if err != nil {
			return nil, nil, err
		}
		call := func() error {
			out, err := p.Invoke(input)
			if err != nil {
				return err
			}
			if !bytes.Contains(out, []byte(`"topic":"echo"`)) {
				return fmt.Errorf("go-plugin answered %q", out)
			}
			return nil
		}
		return call, stop, nil
	}
}

// barePipe is the round trip of the input line to a child that writes it
// back: the floor of any host talking to a worker over pipes.
func barePipe(ctx context.Context, e *env) (func() error, func(), error) {
	bin, err := e.build("./echopipe")
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	r := bufio.NewReaderSize(stdout, 64<<10)
	line := append(append([]byte(nil), input...), '\n')
	call := func() error {
		if _, err := stdin.Write(line); err != nil {
			return err
		}
		got, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if !bytes.Equal(got, line) {
			return fmt.Errorf("echopipe answered %q", strings.TrimSpace(string(got)))
		}
		return nil
	}
	return call, func() { stdin.Close(); cmd.Wait() }, nil
}
