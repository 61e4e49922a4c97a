// Package lang holds the languages the process driver runs, one table
// entry each (All): how an entry's toolchain is found on the host, the
// shim that runs a service's entry, the worker's command line, the package
// manager of its dependencies and where workers see what it installed, and
// what an entry file must be. Adding a language is adding an entry (with
// its shim in runtimes/ and, for a new package manager, a deps.Manager).
// The package starts no worker and builds no sandbox: sandbox/process does,
// from what a Language says.
package lang

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/runtimes/node"
	"github.com/andromeda-runner/andromeda/runtimes/python"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/deps"

	worker "github.com/andromeda-runner/andromeda/runtimes/go"
)

// The languages (sandbox.Spec.Language).
const (
	Node   = "node"   // Node.js: entry is a .js, .cjs or .mjs file run by the runtimes/node shim
	Python = "python" // Python 3: entry is a .py file run by the runtimes/python shim
	Exec   = "exec"   // any executable that speaks the runtime protocol itself
)

// The paths a worker sees its service and its shim at.
const (
	ServiceDir = "/service"
	RuntimeDir = "/runtime"
)

// A Language is everything the process driver knows of one
// sandbox.Spec.Language.
type Language struct {
	Name string
	// Exts are the entry's allowed extensions; none: the entry is an
	// executable (mode o+x) that speaks the runtime protocol itself.
	Exts []string
	// Entry is the usual entry file (the conformance kit's default).
	Entry string
	// Shim, when set, is shown read-only at RuntimeDir (see WriteShim).
	Shim *Shim
	// Argv is the worker's command line, given the interpreter's path (exe)
	// and the entry's path inside the sandbox.
	Argv func(exe, entry string) []string
	// Detect finds the toolchain on this host as tools names it.
	Detect func(ctx context.Context, tools Tools) *Toolchain
	// SelfTest, when set, is a one-line service in Entry that answers
	// every invocation with a noop "self-test: <message as JSON>".
	SelfTest string
	// Deps installs the dependencies a service declares; nil: none.
	Deps *deps.Manager
	// DepsAt is where workers see the installed dependencies; OnPath adds
	// it to the module's search path (worker.Module.Paths).
	DepsAt string
	OnPath bool
	// Exe, when set, is the host path of a runtime registered by
	// descriptor: the worker's executable, shown read-only at
	// RuntimeDir/Name. Its entries are any regular file readable by others
	// (of Exts, when set), which the runtime loads.
	Exe string
	// Modes, when set, are the only modes the language's runtime serves
	// (a registered runtime's descriptor says).
	Modes []sandbox.Mode
}

// Shim is a language shim: a file the interpreter runs, which loads the
// service and speaks the runtime protocol.
type Shim struct {
	File string
	Src  []byte
}

// All are the languages (the driver's self-test checks them at once).
var All = []*Language{{
	Name:     Node,
	Exts:     []string{".js", ".cjs", ".mjs"},
	Entry:    "index.js",
	Shim:     &Shim{node.File, node.Shim},
	Argv:     func(exe, _ string) []string { return []string{exe, RuntimeDir + "/" + node.File} },
	Detect:   detectNode,
	SelfTest: "exports.handle = (input) => ({ noop: 'self-test: ' + JSON.stringify(input.message) });\n",
	Deps:     deps.NPM,        // package.json → npm install → node_modules
	DepsAt:   "/node_modules", // an ancestor of /service: found by require and import alike
}, {
	Name:  Python,
	Exts:  []string{".py"},
	Entry: "main.py",
	Shim:  &Shim{python.File, python.Shim},
	Argv: func(exe, _ string) []string {
		return []string{exe, "-I", "-S", "-B", "-X", "utf8", RuntimeDir + "/" + python.File}
	},
	Detect:   detectPython,
	SelfTest: "import json\n\ndef handle(input):\n    return {'noop': 'self-test: ' + json.dumps(input['message'])}\n",
	Deps:     deps.Pip, // requirements.txt → pip install --target → site
	DepsAt:   "/deps/python",
	OnPath:   true,
}, {
	Name:  Exec,
	Entry: "run",
	Argv:  func(_, entry string) []string { return []string{entry} },
	Detect: func(context.Context, Tools) *Toolchain {
		return &Toolchain{Lang: Exec, Toolchain: deps.Toolchain{Version: fmt.Sprintf("runtime protocol %d", worker.Version)}}
	},
}}

// Lookup returns the language named name, or nil.
func Lookup(name string) *Language {
	for _, l := range All {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// Names lists the names of the languages, as errors show them: "node,
// python and exec".
func Names() string { return list(All, " and ") }

// WithDeps lists the names of the languages whose services may have
// dependencies: "node, python".
func WithDeps() string {
	return list(slices.DeleteFunc(slices.Clone(All), func(l *Language) bool { return l.Deps == nil }), ", ")
}

func list(ls []*Language, last string) string {
	var names []string
	for _, l := range ls {
		names = append(names, l.Name)
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + last + names[len(names)-1]
}

// Managers are the package managers of the languages, in their order.
func Managers() []*deps.Manager {
	var out []*deps.Manager
	for _, l := range All {
		if l.Deps != nil {
			out = append(out, l.Deps)
		}
	}
	return out
}

// CheckEntry checks a service's entry file, relative to its directory dir,
// as l runs it, and returns its path inside the sandbox. A file l cannot
// run is sandbox.ErrUnsupported.
func (l *Language) CheckEntry(dir, entry string) (string, error) {
	if !filepath.IsLocal(entry) {
		return "", fmt.Errorf("entry %q: must be a relative path inside the service directory", entry)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o005 != 0o005 {
		return "", fmt.Errorf("service dir %s has mode %v: workers run as another user and need it readable by others (o+rx)", dir, fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(dir, entry))
	if err != nil {
		return "", fmt.Errorf("entry: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("entry %s: not a regular file", entry)
	}
	switch {
	case len(l.Exts) > 0 && !slices.Contains(l.Exts, strings.ToLower(filepath.Ext(entry))):
		exts := strings.Join(l.Exts[:len(l.Exts)-1], ", ") + " or " + l.Exts[len(l.Exts)-1]
		if len(l.Exts) == 1 {
			exts = l.Exts[0]
		}
		return "", fmt.Errorf("%w: %s entry %s: want a %s file", sandbox.ErrUnsupported, l.Name, entry, exts)
	case len(l.Exts) == 0 && l.Exe == "" && fi.Mode().Perm()&0o001 == 0:
		return "", fmt.Errorf("%s entry %s has mode %v: it must be executable by others (o+x)", l.Name, entry, fi.Mode().Perm())
	case (len(l.Exts) > 0 || l.Exe != "") && fi.Mode().Perm()&0o004 == 0:
		return "", fmt.Errorf("entry %s has mode %v: it must be readable by others (o+r)", entry, fi.Mode().Perm())
	}
	return ServiceDir + "/" + filepath.ToSlash(entry), nil
}

// WriteShim writes l's shim under workDir/runtimes, in a directory named
// after its contents, and returns the directory.
func (l *Language) WriteShim(workDir string) (string, error) {
	src := l.Shim.Src
	sum := sha256.Sum256(src)
	dir := filepath.Join(workDir, "runtimes", l.Name+"-"+hex.EncodeToString(sum[:6]))
	path := filepath.Join(dir, l.Shim.File)
	if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, src) {
		return dir, nil
	}
	fail := func(err error) (string, error) { return "", fmt.Errorf("write %s shim: %w", l.Name, err) }
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".shim-")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fail(err)
	}
	return dir, nil
}

// WriteSelfTest writes l's self-test service under workDir/self-test and
// returns its directory; its entry is l.Entry.
func (l *Language) WriteSelfTest(workDir string) (string, error) {
	dir := filepath.Join(workDir, "self-test", l.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, l.Entry), []byte(l.SelfTest), 0o644)
}
