package lang

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
// toolchain comes back with Err set.
func Detect(ctx context.Context, tools Tools) map[string]*Toolchain {
	out := map[string]*Toolchain{}
	for _, l := range All {
		out[l.Name] = l.Detect(ctx, tools)
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
			if v, err := probe(ctx, info.E, cli, "--version"); err == nil {
				tc.Installer = []string{info.E, cli}
				tc.InstallerVersion = "npm " + strings.TrimSpace(string(v))
				// npm's package directory: .../npm/bin/npm-cli.js → .../npm.
				tc.Mounts = append(tc.Mounts, outsideUsr(filepath.Dir(filepath.Dir(cli)))...)
			}
		}
	}
	return tc
}

func detectPython(ctx context.Context, tools Tools) *Toolchain {
	tc := &Toolchain{Lang: Python}
	path, err := exec.LookPath(tools.Python)
	if err != nil {
		tc.Err = fmt.Errorf("python toolchain: %w", err)
		return tc
	}
	out, err := probe(ctx, path, "-c", `import sys, json; print(json.dumps({"v": sys.version.split()[0], "e": sys.executable, "p": sys.base_prefix}))`)
	if err != nil {
		tc.Err = fmt.Errorf("python toolchain: %w", err)
		return tc
	}
	var info struct{ V, E, P string }
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
	if v, err := probe(ctx, info.E, "-m", "pip", "--version"); err == nil {
		tc.Installer = []string{info.E, "-m", "pip"}
		if f := strings.Fields(string(v)); len(f) >= 2 {
			tc.InstallerVersion = "pip " + f[1]
		}
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
