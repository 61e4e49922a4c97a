package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process/lang"
)

// TestDeployRefused: a spec the driver cannot run fails Deploy with an
// error naming what and why, and leaves no container behind.
func TestDeployRefused(t *testing.T) {
	cfg := testConfig()
	cfg.Registries = []string{"registry.invalid/team"}
	cfg.Images = map[string]string{lang.Node: "sha256:" + strings.Repeat("0", 64)}
	d := newDriver(t, cfg)
	img := guestImage(t, d)
	svc := filepath.Join(t.TempDir(), "svc")
	if err := os.MkdirAll(svc, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"index.js": "exports.handle = () => ({noop: 'x'})\n", "main.py": "def handle(i): return {}\n"} {
		if err := os.WriteFile(filepath.Join(svc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	missingID := "sha256:" + strings.Repeat("ab", 32)
	for _, c := range []struct {
		name string
		spec sandbox.Spec
		want []string
		is   error
	}{
		{"missing ID", sandbox.Spec{Image: missingID}, []string{missingID, "not on the engine", "never pulled"}, ErrImage},
		{"bad ID", sandbox.Spec{Image: "sha256:xyz"}, []string{"sha256:xyz", "64 lowercase hex"}, ErrImage},
		{"unpinned tag", sandbox.Spec{Image: "andromeda-test/nothing-here:latest"}, []string{"andromeda-test/nothing-here:latest", "not on the engine", "never pulled"}, ErrImage},
		{"unlisted registry", sandbox.Spec{Image: "example.org/app@sha256:" + strings.Repeat("1", 64)}, []string{"example.org/app", "not under a registry", "registry.invalid/team"}, ErrImage},
		{"pull fails", sandbox.Spec{Image: "registry.invalid/team/app@sha256:" + strings.Repeat("2", 64)}, []string{"registry.invalid/team/app", "pull"}, ErrImage},
		{"tag without digest", sandbox.Spec{Image: img.Ref}, nil, nil}, // local tags run (the policy decides about tags)
		{"host list", sandbox.Spec{Image: img.ID, Network: sandbox.Network{Hosts: []string{"api.example.com:443"}}}, []string{"network", "api.example.com:443"}, sandbox.ErrUnsupported},
		{"mode", sandbox.Spec{Image: img.ID, Mode: "batch"}, []string{`mode "batch"`}, sandbox.ErrUnsupported},
		{"language without image", sandbox.Spec{Language: lang.Python, Dir: svc, Entry: "main.py"}, []string{"python", "no runtime image"}, sandbox.ErrUnsupported},
		{"unknown language", sandbox.Spec{Language: "ruby", Dir: svc, Entry: "main.rb"}, []string{`"ruby"`}, sandbox.ErrUnsupported},
		{"missing runtime image", sandbox.Spec{Language: lang.Node, Dir: svc, Entry: "index.js"}, []string{"runtime image of node", "not on the engine"}, ErrImage},
		{"volume", sandbox.Spec{Image: img.ID, Volumes: []sandbox.Volume{{Name: "data", Dir: filepath.Join(svc, "none"), Path: "/data"}}}, []string{"volumes[0] data", "not a directory"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.spec.Service = "refused"
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dep, err := d.Deploy(ctx, c.spec)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Deploy() = %v, want it to run", err)
				}
				dep.Stop(ctx)
				return
			}
			if err == nil {
				dep.Stop(ctx)
				t.Fatalf("Deploy() = nil, want an error saying %q", c.want)
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Deploy() = %v, want it to say %q", err, w)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("Deploy() = %v, want errors.Is %v", err, c.is)
			}
			if left := containers(t, d, LabelService+"=refused"); len(left) > 0 {
				t.Errorf("containers left behind: %v", left)
			}
		})
	}
}

// TestDeployDependencies: archive services with dependencies to install
// are refused with the reason; an empty package.json or a
// requirements.txt of comments is not a dependency.
func TestDeployDependencies(t *testing.T) {
	cfg := testConfig()
	cfg.Images = map[string]string{lang.Node: "sha256:" + strings.Repeat("0", 64), lang.Python: "sha256:" + strings.Repeat("0", 64)}
	d := newDriver(t, cfg)
	for _, c := range []struct {
		language, entry, file, content string
		refused                        bool
	}{
		{lang.Node, "index.js", "package.json", `{"dependencies": {"left-pad": "1.3.0"}}`, true},
		{lang.Node, "index.js", "package.json", `{"name": "x", "dependencies": {}}`, false},
		{lang.Python, "main.py", "requirements.txt", "requests==2.31.0\n", true},
		{lang.Python, "main.py", "requirements.txt", "# nothing\n\n", false},
	} {
		dir := filepath.Join(t.TempDir(), "svc")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, c.entry), []byte("x\n"), 0o644)
		os.WriteFile(filepath.Join(dir, c.file), []byte(c.content), 0o644)
		_, err := d.Deploy(context.Background(), sandbox.Spec{Service: "deps", Language: c.language, Dir: dir, Entry: c.entry})
		refused := err != nil && errors.Is(err, sandbox.ErrUnsupported) && strings.Contains(err.Error(), "does not install dependencies")
		if refused != c.refused {
			t.Errorf("%s with %s %q: Deploy() = %v, want refused for its dependencies: %v", c.language, c.file, c.content, err, c.refused)
		}
		if !c.refused && !errors.Is(err, ErrImage) {
			// Past the dependency check, the missing runtime image stops it.
			t.Errorf("%s with %s %q: Deploy() = %v, want the missing runtime image", c.language, c.file, c.content, err)
		}
	}
}
