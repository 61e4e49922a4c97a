package process

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

// The languages the driver runs (Spec.Language).
const (
	LangNode   = "node"   // Node.js: entry is a .js, .cjs or .mjs file run by the runtimes/node shim
	LangPython = "python" // Python 3: entry is a .py file run by the runtimes/python shim
	LangExec   = "exec"   // any executable that speaks the runtime protocol itself
)

// toolchain is one language's interpreter (and installer) on this host.
type toolchain struct {
	lang    string
	exe     string   // absolute path of the interpreter, as the sandbox sees it too
	version string   // as Offer reports it
	mounts  []string // directories outside /usr the toolchain needs, shown read-only at the same path
	// installer is the dependency installer's argv prefix, empty when
	// missing; installerVersion its version.
	installer        []string
	installerVersion string
	err              error // why the language is unavailable
}

// detectToolchains finds node, python3 and their installers as cfg names
// them. A missing toolchain comes back with err set.
func detectToolchains(ctx context.Context, cfg Config) map[string]*toolchain {
	return map[string]*toolchain{
		LangNode:   detectNode(ctx, cfg),
		LangPython: detectPython(ctx, cfg),
		LangExec:   {lang: LangExec, version: fmt.Sprintf("runtime protocol %d", worker.Version)},
	}
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

func detectNode(ctx context.Context, cfg Config) *toolchain {
	tc := &toolchain{lang: LangNode}
	path, err := exec.LookPath(cfg.Node)
	if err != nil {
		tc.err = fmt.Errorf("node toolchain: %w", err)
		return tc
	}
	out, err := probe(ctx, path, "-e", `process.stdout.write(JSON.stringify({v: process.version, e: process.execPath}))`)
	if err != nil {
		tc.err = fmt.Errorf("node toolchain: %w", err)
		return tc
	}
	var info struct{ V, E string }
	if err := json.Unmarshal(out, &info); err != nil {
		tc.err = fmt.Errorf("node toolchain: %s -e: unexpected output %.100q", path, out)
		return tc
	}
	tc.exe, tc.version = info.E, "node "+info.V
	tc.mounts = outsideUsr(filepath.Dir(filepath.Dir(info.E)))
	if npm, err := exec.LookPath(cfg.NPM); err == nil {
		if cli, err := filepath.EvalSymlinks(npm); err == nil {
			if v, err := probe(ctx, info.E, cli, "--version"); err == nil {
				tc.installer = []string{info.E, cli}
				tc.installerVersion = "npm " + strings.TrimSpace(string(v))
				// npm's package directory: .../npm/bin/npm-cli.js → .../npm.
				tc.mounts = append(tc.mounts, outsideUsr(filepath.Dir(filepath.Dir(cli)))...)
			}
		}
	}
	return tc
}

func detectPython(ctx context.Context, cfg Config) *toolchain {
	tc := &toolchain{lang: LangPython}
	path, err := exec.LookPath(cfg.Python)
	if err != nil {
		tc.err = fmt.Errorf("python toolchain: %w", err)
		return tc
	}
	out, err := probe(ctx, path, "-c", `import sys, json; print(json.dumps({"v": sys.version.split()[0], "e": sys.executable, "p": sys.base_prefix}))`)
	if err != nil {
		tc.err = fmt.Errorf("python toolchain: %w", err)
		return tc
	}
	var info struct{ V, E, P string }
	if err := json.Unmarshal(out, &info); err != nil || info.E == "" {
		tc.err = fmt.Errorf("python toolchain: %s -c: unexpected output %.100q", path, out)
		return tc
	}
	if !strings.HasPrefix(info.V, "3.") {
		tc.err = fmt.Errorf("python toolchain: %s is Python %s, want 3.8 or later", info.E, info.V)
		return tc
	}
	tc.exe, tc.version = info.E, "python "+info.V
	tc.mounts = append(outsideUsr(info.P), outsideUsr(filepath.Dir(info.E))...)
	if v, err := probe(ctx, info.E, "-m", "pip", "--version"); err == nil {
		tc.installer = []string{info.E, "-m", "pip"}
		if f := strings.Fields(string(v)); len(f) >= 2 {
			tc.installerVersion = "pip " + f[1]
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
