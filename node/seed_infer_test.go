package node

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/manifest"
)

// TestInferRuntime: how an archive without a manifest is run, from its
// files alone, and the words of each refusal.
func TestInferRuntime(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string // path → content
		driver  manifest.Driver
		lang    string
		entry   string
		detail  string // in the reason
		wantErr string
	}{
		{"one wasm", map[string]string{"main.wasm": ""}, "wasm", "wasm", "main.wasm", "one .wasm file (main.wasm) → wasm command service", ""},
		{"one wasm deep, beside a readme", map[string]string{"README.md": "", "build/app.wasm": ""}, "wasm", "wasm", "build/app.wasm", "build/app.wasm", ""},
		{"one js", map[string]string{"service.js": ""}, "process", "node", "service.js", "one .js file (service.js) → node", ""},
		{"package.json main", map[string]string{"package.json": `{"name":"x","main":"./src/run.js"}`, "src/run.js": "", "src/lib.js": ""}, "process", "node", "src/run.js", "package.json main", ""},
		{"package.json index.js", map[string]string{"package.json": `{"name":"x"}`, "index.js": "", "lib.js": ""}, "process", "node", "index.js", "index.js", ""},
		{"package.json one js", map[string]string{"package.json": `{}`, "app.js": ""}, "process", "node", "app.js", "the one .js file", ""},
		{"package.json main missing", map[string]string{"package.json": `{"main":"gone.js"}`, "app.js": ""}, "", "", "", "", `package.json: main "gone.js": no such file`},
		{"package.json not json", map[string]string{"package.json": `{`, "app.js": ""}, "", "", "", "", "package.json: not JSON"},
		{"package.json no entry", map[string]string{"package.json": `{}`, "a.js": "", "b.js": ""}, "", "", "", "", "package.json names no main, there is no index.js and 2 .js files"},
		{"one py", map[string]string{"main.py": ""}, "process", "python", "main.py", "one .py file (main.py) → python", ""},
		{"requirements main.py", map[string]string{"requirements.txt": "", "main.py": "", "util.py": ""}, "process", "python", "main.py", "requirements.txt → python", ""},
		{"requirements one py", map[string]string{"requirements.txt": "", "app.py": ""}, "process", "python", "app.py", "entry app.py", ""},
		{"requirements no main", map[string]string{"requirements.txt": "", "a.py": "", "b.py": ""}, "", "", "", "", "requirements.txt, 2 .py files and no main.py"},
		{"two py", map[string]string{"a.py": "", "b.py": ""}, "", "", "", "", "cannot infer the runtime: 2 .py files and no requirements.txt; add an andromeda.yaml"},
		{"two wasm", map[string]string{"a.wasm": "", "b.wasm": ""}, "", "", "", "", "cannot infer the runtime: 2 .wasm files; add an andromeda.yaml"},
		{"two js", map[string]string{"a.js": "", "b.js": ""}, "", "", "", "", "2 .js files and no package.json"},
		{"nothing runnable", map[string]string{"README.md": "", "main.go": ""}, "", "", "", "", "no .wasm, .js or .py file"},
		{"empty", map[string]string{}, "", "", "", "", "no .wasm, .js or .py file"},
		{"wasm and js", map[string]string{"a.wasm": "", "glue.js": ""}, "", "", "", "", "it fits wasm (a.wasm) and node (glue.js)"},
		{"py and package.json", map[string]string{"main.py": "", "package.json": "{}"}, "", "", "", "", "node (package.json) and python (main.py)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var files []string
			for f := range tc.files {
				files = append(files, f)
			}
			read := func(name string) ([]byte, error) {
				c, ok := tc.files[name]
				if !ok {
					return nil, fs.ErrNotExist
				}
				return []byte(c), nil
			}
			inf, err := inferRuntime(files, read)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("inferRuntime = %+v, %v; want an error saying %q", inf, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("inferRuntime: %v", err)
			}
			r := inf.runtime
			if r.Driver != tc.driver || r.Language != tc.lang || r.Entry != tc.entry || !strings.Contains(inf.detail, tc.detail) {
				t.Fatalf("inferRuntime = %+v %q, want %s %s %s saying %q", r, inf.detail, tc.driver, tc.lang, tc.entry, tc.detail)
			}
			if (r.Driver == manifest.DriverProcess) != (inf.memory != "") {
				t.Errorf("memory = %q for driver %s: only process services ask for more", inf.memory, r.Driver)
			}
		})
	}
}

func TestSeedName(t *testing.T) {
	for _, tc := range []struct{ title, want string }{
		{"Weather Feed", "weather-feed"},
		{"  Weather   Feed!! ", "weather-feed"},
		{"DeFi bridge v2.1", "defi-bridge-v2-1"},
		{"3D render", "s-3d-render"},
		{"Café ☕ oracle", "caf-oracle"},
		{strings.Repeat("ab ", 40), strings.TrimRight(strings.Repeat("ab-", 21), "-")},
	} {
		if got := seedName(tc.title); got != tc.want {
			t.Errorf("seedName(%q) = %q, want %q", tc.title, got, tc.want)
		}
	}
	// A title without an ASCII letter or digit gets a stable name from its
	// hash; every name is a valid manifest name.
	a, b := seedName("天气"), seedName("天气")
	if a != b || !strings.HasPrefix(a, "seed-") || a == seedName("雨") {
		t.Errorf("seedName of non-Latin titles = %q, %q, %q", a, b, seedName("雨"))
	}
	for _, title := range []string{"Weather Feed", "天气", "3D", strings.Repeat("x-", 80), "-a-"} {
		m := manifest.Service{Name: seedName(title), Version: "1.0.0", Runtime: manifest.Runtime{Language: "wasm", Entry: "a.wasm"}}
		m.Normalize()
		var me manifest.Errors
		if err := m.Validate(); errors.As(err, &me) {
			for _, p := range me {
				if strings.HasPrefix(p.Error(), "name") {
					t.Errorf("seedName(%q) = %q: %v", title, m.Name, p)
				}
			}
		}
	}
}

func TestStripDir(t *testing.T) {
	dir := "/data/tmp/seed-1/svc"
	err := stripDir(fmt.Errorf("load %s: %w: andromeda.yaml, andromeda.json; keep one", dir, manifest.ErrManyManifests), dir)
	if got, want := err.Error(), "load the archive: more than one manifest: andromeda.yaml, andromeda.json; keep one"; got != want || !errors.Is(err, manifest.ErrManyManifests) {
		t.Errorf("stripDir = %q (wraps %v), want %q", got, errors.Is(err, manifest.ErrManyManifests), want)
	}
	err = stripDir(fmt.Errorf("%s/andromeda.yaml: bad", dir), dir)
	if got := err.Error(); got != "andromeda.yaml: bad" {
		t.Errorf("stripDir = %q", got)
	}
}
