package process

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// mountinfoPython returns the worker's /proc/self/mountinfo, after
// importing a package from its dependency directory.
const mountinfoPython = `import pyhide

def handle(input):
    with open('/proc/self/mountinfo') as f:
        return {'noop': pyhide.MARK + f.read()}
`

// mountinfoExec is a worker in shell that answers every invocation with
// its /proc/self/mountinfo in base64.
const mountinfoExec = `#!/bin/sh
read -r init
printf '%s\n' '{"type":"ready","id":"init","protocol":1,"runtime":"sh","concurrency":1}'
while read -r msg; do
  case "$msg" in *'"type":"invoke"'*) ;; *) exit 0 ;; esac
  id=$(printf '%s' "$msg" | sed 's/^{"type":"invoke","id":"\([^"]*\)".*/\1/')
  printf '{"type":"result","id":"%s","output":{"noop":"%s"}}\n' "$id" "$(base64 -w0 /proc/self/mountinfo)"
done
`

// TestMountinfoHidesHostPaths has workers read /proc/self/mountinfo: the
// root field of a bind mount is its source's path on the host, so neither
// the node's data dir (here the test's temporary directory, holding the
// work dir, the service directories and the registry), the service's
// directory, its shim's nor its dependencies' may show; a mount's root may
// only be "/" or the path it is mounted at (the host's /usr, the
// toolchain), a device node of /dev or a directory of /proc.
func TestMountinfoHidesHostPaths(t *testing.T) {
	requireSandbox(t)
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(fs), "\toverlay\n") {
		t.Skip("no overlayfs on this host: the driver falls back to bind mounts, which show host paths")
	}
	data := t.TempDir() // stands in for the node's data dir
	registry := filepath.Join(data, "registry")
	if err := os.MkdirAll(registry, 0o755); err != nil {
		t.Fatal(err)
	}
	writeWheel(t, registry, "pyhide", "1.0.0", "MARK = 'deps ok\\n'\n")
	cfg := testConfig()
	cfg.WorkDir = filepath.Join(data, "work")
	cfg.Registries = map[string]string{LangPython: registry}
	d := newDriver(t, cfg)

	for _, c := range []struct {
		name, lang, entry string
		files             map[string]string
		mode              sandbox.Mode
		decode            func(string) (string, error)
	}{
		{name: "python-with-deps", lang: LangPython, entry: "main.py", mode: sandbox.ModeServer,
			files:  map[string]string{"main.py": mountinfoPython, "requirements.txt": "pyhide==1.0.0\n"},
			decode: func(s string) (string, error) { return strings.TrimPrefix(s, "deps ok\n"), nil }},
		{name: "exec-command", lang: LangExec, entry: "worker", mode: sandbox.ModeCommand,
			files: map[string]string{"worker": mountinfoExec},
			decode: func(s string) (string, error) {
				b, err := base64.StdEncoding.DecodeString(s)
				return string(b), err
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			requireLang(t, c.lang)
			if c.lang == LangPython {
				requireInstaller(t, c.lang)
			}
			dir := filepath.Join(data, "services", "sha256-"+c.name)
			if err := writeService(dir, c.files); err != nil {
				t.Fatal(err)
			}
			dep := deploy(t, d, sandbox.Spec{Service: "hide-" + c.name, Dir: dir, Entry: c.entry, Language: c.lang, Mode: c.mode,
				Limits: sandbox.Limits{Concurrency: 1}})
			r, err := sandbox.CallRaw(context.Background(), dep, []byte(`{"run_id":"r","message":{}}`), 30*time.Second)
			if err != nil || r.Outcome != sandbox.Noop {
				t.Fatalf("outcome %s (%s) %v", r.Outcome, r.Error, err)
			}
			if c.lang == LangPython && !strings.HasPrefix(r.Output.Noop, "deps ok\n") {
				t.Fatalf("the dependency did not load: %.200q", r.Output.Noop)
			}
			info, err := c.decode(r.Output.Noop)
			if err != nil || !strings.Contains(info, " / / ") {
				t.Fatalf("not a mountinfo (%v): %.300q", err, info)
			}
			t.Logf("the worker's /proc/self/mountinfo:\n%s", info)
			for _, host := range []string{data, cfg.WorkDir, dir, testEnv.dir} {
				if strings.Contains(info, host) {
					t.Errorf("mountinfo shows the host path %s", host)
				}
			}
			for line := range strings.SplitSeq(strings.TrimSpace(info), "\n") {
				f := strings.Fields(line)
				sep := strings.Index(line, " - ")
				if len(f) < 5 || sep < 0 {
					t.Errorf("unparsed mountinfo line %q", line)
					continue
				}
				root, at, fstype := f[3], f[4], strings.Fields(line[sep+3:])[0]
				if root != "/" && root != at && fstype != "devtmpfs" && fstype != "proc" {
					t.Errorf("mount at %s shows the root %s (%s): a host path", at, root, fstype)
				}
			}
		})
	}
}
