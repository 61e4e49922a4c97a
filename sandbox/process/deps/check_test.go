package deps

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDepsCheckPyRequirement(t *testing.T) {
	for _, c := range []struct {
		line string
		ok   bool
	}{
		{"requests", true},
		{"requests>=2", true},
		{"Requests[socks, security] >= 2.0, < 3", true},
		{"zope.interface==6.1", true},
		{"foo (>=1.0)", true},
		{"foo==1.0 ; python_version < \"3.8\" and sys_platform == 'linux'", true},
		{"foo==1.0 --hash=sha256:0123abcd", true},
		{"foo~=1.4.2", true},
		{"./evilpkg", false},
		{"evilpkg/", false},
		{"/srv/evilpkg", false},
		{".", false},
		{"foo @ https://example.com/foo-1.0.tar.gz", false},
		{"foo@file:///srv/foo", false},
		{"git+https://github.com/x/y.git#egg=y", false},
		{"https://example.com/y-1.0.tar.gz", false},
		{"evil.tar.gz", false},
		{"evil-1.0-py3-none-any.whl", false},
		{"evil.zip", false},
		{"${HOME}/evil", false},
		{"foo==1.0 --global-option=--x", false},
		{"foo==1.0 --config-settings=a=b", false},
		{"foo==1.0 --hash sha256:00", false},
		{"foo ; python_version < '3.8' @ http://x", false},
		{`C:\evil`, false},
	} {
		rule := checkPyRequirement(c.line)
		if (rule == "") != c.ok {
			t.Errorf("checkPyRequirement(%q) = %q, want ok %v", c.line, rule, c.ok)
		}
	}
}

// writeFiles writes files (name → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDepsReadRequirements(t *testing.T) {
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{"secret.txt": "pyleft==1.0.0\n"})
	for _, c := range []struct {
		name        string
		files       map[string]string
		reqs, cons  []string
		err         string // the whole error; "" for none
		errContains string
	}{
		{
			name:  "plain",
			files: map[string]string{"requirements.txt": "\ufeff# deps\npyleft==1.0.0  # pinned\n\nRequests[socks]>=2 \\\n  ,<3\n--pre\n"},
			reqs:  []string{"pyleft==1.0.0", "Requests[socks]>=2   ,<3", "--pre"},
		},
		{
			name: "includes",
			files: map[string]string{
				"requirements.txt":   "-r base/common.txt\n--constraint=pins.txt\nextra\n",
				"base/common.txt":    "common==1\n-r more.txt\n",
				"base/more.txt":      "more==2\n",
				"pins.txt":           "common<2\n",
				"unused/ignored.txt": "./evil\n",
			},
			reqs: []string{"common==1", "more==2", "extra"},
			cons: []string{"common<2"},
		},
		{
			name:  "local path",
			files: map[string]string{"requirements.txt": "pyleft==1.0.0\n# the service's own project\n./evilpkg\n"},
			err:   "requirements.txt:3: local paths, URLs and VCS requirements are not allowed (only name[extras] version-specifier lines)",
		},
		{
			name:  "local path in an include",
			files: map[string]string{"requirements.txt": "-r sub/r.txt\n", "sub/r.txt": "ok\n\n../evilpkg\n"},
			err:   "sub/r.txt:3: local paths, URLs and VCS requirements are not allowed (only name[extras] version-specifier lines)",
		},
		{
			name:  "path hidden by a continuation",
			files: map[string]string{"requirements.txt": "ok\n.\\\n/evilpkg\n"},
			err:   "requirements.txt:2: local paths, URLs and VCS requirements are not allowed (only name[extras] version-specifier lines)",
		},
		{
			name:  "url",
			files: map[string]string{"requirements.txt": "foo @ https://example.com/foo-1.0.tar.gz\n"},
			err:   "requirements.txt:1: local paths, URLs and VCS requirements are not allowed (only name[extras] version-specifier lines)",
		},
		{
			name:  "vcs",
			files: map[string]string{"requirements.txt": "git+https://github.com/x/y.git#egg=y\n"},
			err:   "requirements.txt:1: local paths, URLs and VCS requirements are not allowed (only name[extras] version-specifier lines)",
		},
		{
			name:  "editable",
			files: map[string]string{"requirements.txt": "-e ./evilpkg\n"},
			err:   "requirements.txt:1: editable requirements (-e) are not allowed (only name[extras] version-specifier lines)",
		},
		{name: "index url", files: map[string]string{"requirements.txt": "--index-url https://evil.example/simple\nfoo\n"}, errContains: "requirements.txt:1: option --index-url is not allowed"},
		{name: "short index url", files: map[string]string{"requirements.txt": "foo\n-ihttps://evil.example/simple\n"}, errContains: "requirements.txt:2: option -i is not allowed"},
		{name: "extra index url", files: map[string]string{"requirements.txt": "--extra-index-url=https://evil.example/simple\n"}, errContains: "option --extra-index-url is not allowed"},
		{name: "find links", files: map[string]string{"requirements.txt": "-f ./wheels\n"}, errContains: "option -f is not allowed"},
		{name: "trusted host", files: map[string]string{"requirements.txt": "--trusted-host evil.example\n"}, errContains: "option --trusted-host is not allowed"},
		{name: "no binary", files: map[string]string{"requirements.txt": "--no-binary :all:\n"}, errContains: "option --no-binary is not allowed"},
		{name: "include escapes", files: map[string]string{"requirements.txt": "-r ../" + filepath.Base(outside) + "/secret.txt\n"}, errContains: "requirements.txt:1: ../"},
		{name: "include absolute", files: map[string]string{"requirements.txt": "-r " + outside + "/secret.txt\n"}, errContains: "must be a relative path inside the service directory"},
		{name: "include url", files: map[string]string{"requirements.txt": "-r https://evil.example/r.txt\n"}, errContains: "not a URL"},
		{name: "include missing", files: map[string]string{"requirements.txt": "-c nope.txt\n"}, err: "requirements.txt:1: -c nope.txt: no such file in the service directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, c.files)
			got, err := readRequirements(dir, "requirements.txt", false)
			switch {
			case c.err == "" && c.errContains == "":
				if err != nil {
					t.Fatalf("readRequirements = %v, want no error", err)
				}
				if !slices.Equal(got.reqs, c.reqs) || !slices.Equal(got.constraints, c.cons) {
					t.Errorf("readRequirements = %q, %q; want %q, %q", got.reqs, got.constraints, c.reqs, c.cons)
				}
			case err == nil:
				t.Fatalf("readRequirements = %q, nil; want an error", got.reqs)
			case c.err != "" && err.Error() != c.err, c.errContains != "" && !strings.Contains(err.Error(), c.errContains):
				t.Errorf("readRequirements error = %q, want %q%q", err, c.err, c.errContains)
			}
			var dse *SourceError
			if err != nil && !errors.As(err, &dse) {
				t.Errorf("readRequirements error %v is not a *SourceError", err)
			}
		})
	}

	t.Run("symlink escape", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"requirements.txt": "-r link.txt\n"})
		if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "link.txt")); err != nil {
			t.Fatal(err)
		}
		if got, err := readRequirements(dir, "requirements.txt", false); err == nil {
			t.Errorf("readRequirements through a symbolic link out of the service = %q, nil; want an error", got.reqs)
		}
	})
	t.Run("allow any", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"requirements.txt": "--index-url http://x/simple\n-e ./evilpkg\n./other\n"})
		got, err := readRequirements(dir, "requirements.txt", true)
		if want := []string{"--index-url http://x/simple", "-e ./evilpkg", "./other"}; err != nil || !slices.Equal(got.reqs, want) {
			t.Errorf("readRequirements(allowAny) = %q, %v; want %q", got.reqs, err, want)
		}
	})
	t.Run("none", func(t *testing.T) {
		got, err := readRequirements(t.TempDir(), "requirements.txt", false)
		if err != nil || len(got.reqs) != 0 {
			t.Errorf("readRequirements without a file = %q, %v; want nothing", got.reqs, err)
		}
	})
}

func TestDepsCheckPackageJSON(t *testing.T) {
	for _, c := range []struct {
		name, src string
		err       string // "" for none
	}{
		{"registry", `{"dependencies": {"a": "^1.0.0", "b": "latest", "c": "npm:d@^2", "@s/e": "1.x || >=2.1 <3", "f": "*", "g": ""},
		  "devDependencies": {"h": "~1"}, "overrides": {"a": {"x": "1.2.3", ".": "$a"}}}`, ""},
		{"file", "{\n  \"name\": \"svc\",\n  \"dependencies\": {\n    \"evil\": \"file:vendor/evil\"\n  }\n}",
			`package.json:4: dependencies["evil"] = "file:vendor/evil": local paths, URLs and git specs are not allowed (only registry versions, ranges, tags and npm: aliases)`},
		{"link", `{"dependencies": {"evil": "link:../evil"}}`, "package.json:1: dependencies"},
		{"path", `{"optionalDependencies": {"evil": "./evil"}}`, "package.json:1: optionalDependencies"},
		{"tarball path", `{"dependencies": {"evil": "evil-1.0.0.tgz"}}`, "not allowed"},
		{"tarball url", `{"dependencies": {"evil": "https://evil.example/evil.tgz"}}`, "not allowed"},
		{"git", `{"dependencies": {"evil": "git+https://github.com/x/evil.git"}}`, "not allowed"},
		{"github shorthand", `{"dependencies": {"evil": "x/evil"}}`, "not allowed"},
		{"github", `{"dependencies": {"evil": "github:x/evil#main"}}`, "not allowed"},
		{"dev", `{"devDependencies": {"evil": "git://x/evil"}}`, "devDependencies"},
		{"peer", `{"peerDependencies": {"evil": "file:/srv"}}`, "peerDependencies"},
		{"alias to a path", `{"dependencies": {"evil": "npm:evil@file:../x"}}`, "not allowed"},
		{"override", `{"overrides": {"a": {"b": "file:../b"}}}`, `overrides "a > b"`},
		{"workspaces", `{"workspaces": ["packages/*"]}`, "workspaces are not allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkPackageJSON([]byte(c.src))
			switch {
			case c.err == "" && err != nil:
				t.Errorf("checkPackageJSON = %v, want nil", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Errorf("checkPackageJSON = %v, want an error with %q", err, c.err)
			}
		})
	}
}

func TestDepsCheckPackageLock(t *testing.T) {
	ok := `{"lockfileVersion": 3, "packages": {"": {"dependencies": {"a": "^1"}},
	  "node_modules/a": {"version": "1.0.0", "resolved": "https://registry.npmjs.org/a/-/a-1.0.0.tgz", "dependencies": {"b": "^2"}}}}`
	if err := checkPackageLock([]byte(ok)); err != nil {
		t.Errorf("checkPackageLock(registry) = %v, want nil", err)
	}
	for _, c := range []struct{ name, src, err string }{
		{"file", `{"packages": {"node_modules/a": {"resolved": "file:../a"}}}`, `packages["node_modules/a"]["resolved"] = "file:../a": only registry URLs are allowed`},
		{"link", "{\"packages\": {\n\"node_modules/a\": {\"link\": true, \"resolved\": \"https://x/a.tgz\"}}}", "package-lock.json:2:"},
		{"git", `{"packages": {"node_modules/a": {"resolved": "git+ssh://git@github.com/x/a.git#abc"}}}`, "only registry URLs"},
		{"root dependency", `{"packages": {"": {"dependencies": {"a": "file:a"}}}}`, "not allowed"},
		{"v1 version", `{"dependencies": {"a": {"version": "file:../a"}}}`, "not allowed"},
		{"v1 requires", `{"dependencies": {"a": {"version": "1.0.0", "requires": {"b": "github:x/b"}}}}`, "not allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := checkPackageLock([]byte(c.src)); err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("checkPackageLock = %v, want an error with %q", err, c.err)
			}
		})
	}
}

func TestDepsCheckAdded(t *testing.T) {
	reg := t.TempDir()
	for _, c := range []struct {
		m              *Manager
		spec, registry string
		ok             bool
	}{
		{NPM, "left-pad", "", true},
		{NPM, "left-pad@1.3.0", "", true},
		{NPM, "@scope/x@^2", "", true},
		{NPM, filepath.Join(reg, "left-pad-1.3.0.tgz"), reg, true},
		{NPM, filepath.Join(reg, "left-pad-1.3.0.tgz"), "", false},
		{NPM, "/etc/evil", reg, false},
		{NPM, reg + "/../evil", reg, false},
		{NPM, "./evil", "", false},
		{NPM, "x/evil", "", false},
		{NPM, "evil@file:../x", "", false},
		{NPM, "https://evil.example/e.tgz", "", false},
		{Pip, "requests>=2", "", true},
		{Pip, filepath.Join(reg, "pyleft-1.0.0-py3-none-any.whl"), reg, true},
		{Pip, filepath.Join(reg, "pyleft-1.0.0.tar.gz"), reg, false},
		{Pip, "./evilpkg", "", false},
		{Pip, "evil @ https://evil.example/e.whl", "", false},
	} {
		err := checkAdded(c.m, c.spec, c.registry, false)
		if (err == nil) != c.ok {
			t.Errorf("checkAdded(%s, %q, %q) = %v, want ok %v", c.m.Language, c.spec, c.registry, err, c.ok)
		}
	}
	if err := checkAdded(Pip, "./evilpkg", "", true); err != nil {
		t.Errorf("checkAdded(allowAny) = %v, want nil", err)
	}
}
