package node

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestLoader checks that the loader section is cut out of shim.cjs and
// stands on its own: it names none of Node's own APIs, and, where node is
// on PATH, it runs in a bare context (no require, process or Buffer) and
// defines loader with what the browser runtime calls.
func TestLoader(t *testing.T) {
	if len(Loader) == 0 {
		t.Fatalf("Loader is empty: shim.cjs must hold the lines %q and %q", loaderBegin, loaderEnd)
	}
	if !bytes.HasPrefix(Loader, []byte(loaderBegin)) || !bytes.HasSuffix(Loader, []byte(loaderEnd)) {
		t.Errorf("Loader = %.60q…, want the section from %q to %q", Loader, loaderBegin, loaderEnd)
	}
	code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAll(Loader, nil) // comments may name them
	for _, node := range []string{"require(", "process.", "Buffer", "globalThis", "import("} {
		if bytes.Contains(code, []byte(node)) {
			t.Errorf("the loader section uses %q; it must run in a browser too", node)
		}
	}

	exe, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: the loader is not run")
	}
	dir := t.TempDir()
	check := `'use strict';
const vm = require('node:vm');
const src = require('node:fs').readFileSync(process.argv[2], 'utf8');
const sandbox = vm.createContext({ AbortController }); // a web API, not the language's
vm.runInContext(src + '\n;globalThis.loader = loader;', sandbox);
const l = sandbox.loader;
const want = ['pick', 'context', 'call', 'run', 'isThenable', 'encode', 'failure', 'describe', 'result', 'error'];
for (const k of want) if (typeof l[k] !== 'function') throw new Error('loader.' + k + ' is not a function');
const mod = l.pick({ default: { handle: (input) => [{ kind: 'k', params: input.n }] } });
l.run(mod, { n: 1 }, () => ({}), (v) => console.log(l.result('1', l.encode(v).json)), (e) => { throw e; });
`
	if err := os.WriteFile(filepath.Join(dir, "check.cjs"), []byte(check), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "loader.js"), Loader, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, filepath.Join(dir, "check.cjs"), filepath.Join(dir, "loader.js")).CombinedOutput()
	if err != nil {
		t.Fatalf("node check.cjs: %v\n%s", err, out)
	}
	if got, want := string(bytes.TrimSpace(out)), `{"type":"result","id":"1","output":{"actions":[{"kind":"k","params":1}]}}`; got != want {
		t.Errorf("the loader answered %s, want %s", got, want)
	}
}
