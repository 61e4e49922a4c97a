package lang

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox/process/deps"
)

// Tools is how the node's configuration names the toolchains: a path, or a
// name looked up on PATH. pip is run as Python -m pip.
type Tools struct {
	Node, Python, NPM string
}

// Toolchain is one language's interpreter (and package manager) on this
// host: what an install needs (Exe is the interpreter's absolute path, as
// the sandbox sees it too; Mounts the directories outside /usr it needs,
// shown read-only at the same path; Version as an offer reports it), the
// language, and why it is unavailable.
type Toolchain struct {
	Lang string
	deps.Toolchain
	Err error
}

// Detect finds every language's toolchain as tools names it. A missing
// toolchain comes back with Err set. The languages are probed at once
// (each probe starts an interpreter, some of them for a second or more).
func Detect(ctx context.Context, tools Tools) map[string]*Toolchain {
	found := make([]*Toolchain, len(All))
	var wg sync.WaitGroup
	for i, l := range All {
		wg.Go(func() { found[i] = l.Detect(ctx, tools) })
	}
	wg.Wait()
	out := map[string]*Toolchain{}
	for i, l := range All {
		out[l.Name] = found[i]
	}
	return out
}

// probe runs argv with a clean environment and returns its standard output.
func probe(ctx context.Context, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// PATH and HOME only: pyenv's shims and npm need them; nothing of the
	// node's own environment (tokens) reaches a toolchain.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8"}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		if msg != "" {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
		}
		return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out, nil
}
func detectNode(ctx context.Context, tools Tools) *Toolchain {
	tc := &Toolchain{Lang: Node}
	path, err := exec.LookPath(tools.Node)
	if err != nil {
		tc.Err = fmt.Errorf("node toolchain: %w", err)
		return tc
	}
	out, err := probe(ctx, path, "-e", `process.stdout.write(JSON.stringify({v: process.version, e: process.execPath}))`)
	if err != nil {
		tc.Err = fmt.Errorf("node toolchain: %w", err)
		return tc
	}
	var info struct{ V, E string }
	if err := json.Unmarshal(out, &info); err != nil {
		tc.Err = fmt.Errorf("node toolchain: %s -e: unexpected output %.100q", path, out)
		return tc
	}
	tc.Exe, tc.Version = info.E, "node "+info.V
	tc.Mounts = outsideUsr(filepath.Dir(filepath.Dir(info.E)))
	if npm, err := exec.LookPath(tools.NPM); err == nil {
		if cli, err := filepath.EvalSymlinks(npm); err == nil {
			// npm's package directory: .../npm/bin/npm-cli.js → .../npm.
			pkg := filepath.Dir(filepath.Dir(cli))
			if v, err := npmVersion(ctx, info.E, cli, pkg); err == nil {
				tc.Installer = []string{info.E, cli}
				tc.InstallerVersion = "npm " + v
				tc.Mounts = append(tc.Mounts, outsideUsr(pkg)...)
			}
		}
	}
	return tc
}

// npmVersion reads the version of the npm whose CLI is cli from its
// package.json (starting npm to ask takes a tenth of a second or more),
// else runs cli --version with node.
func npmVersion(ctx context.Context, node, cli, pkg string) (string, error) {
	if data, err := os.ReadFile(filepath.Join(pkg, "package.json")); err == nil {
		var meta struct{ Name, Version string }
		if json.Unmarshal(data, &meta) == nil && meta.Name == "npm" && meta.Version != "" {
			return meta.Version, nil
		}
	}
	v, err := probe(ctx, node, cli, "--version")
	return strings.TrimSpace(string(v)), err
}

// pythonProbe prints the interpreter's version, path and prefix, and the
// version of the pip it can import ("" without one), in one start: running
// python -m pip --version too would take most of a second more.
const pythonProbe = `import sys, json
pip = ""
try:
    import importlib.util, importlib.metadata
    if importlib.util.find_spec("pip") is not None:
        pip = importlib.metadata.version("pip")
except Exception:
    pass
print(json.dumps({"v": sys.version.split()[0], "e": sys.executable, "p": sys.base_prefix, "pip": pip}))`

func detectPython(ctx context.Context, tools Tools) *Toolchain {
	tc := &Toolchain{Lang: Python}
	path, err := exec.LookPath(tools.Python)
	if err != nil {
		tc.Err = fmt.Errorf("python toolchain: %w", err)
		return tc
	}
	out, err := probe(ctx, path, "-c", pythonProbe)
	if err != nil {
		tc.Err = fmt.Errorf("python toolchain: %w", err)
		return tc
	}
	var info struct{ V, E, P, Pip string }
	if err := json.Unmarshal(out, &info); err != nil || info.E == "" {
		tc.Err = fmt.Errorf("python toolchain: %s -c: unexpected output %.100q", path, out)
		return tc
	}
	if !strings.HasPrefix(info.V, "3.") {
		tc.Err = fmt.Errorf("python toolchain: %s is Python %s, want 3.8 or later", info.E, info.V)
		return tc
	}
	tc.Exe, tc.Version = info.E, "python "+info.V
	tc.Mounts = append(outsideUsr(info.P), outsideUsr(filepath.Dir(info.E))...)
	if info.Pip != "" {
		tc.Installer = []string{info.E, "-m", "pip"}
		tc.InstallerVersion = "pip " + info.Pip
	}
	return tc
}

// outsideUsr returns dir in a list unless the sandbox shows it anyway (it is
// under /usr, where every sandbox sees the host's files read-only).
func outsideUsr(dir string) []string {
	if dir == "/usr" || strings.HasPrefix(dir, "/usr/") || dir == "/" || dir == "." {
		return nil
	}
	return []string{dir}
}
