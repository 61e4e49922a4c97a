package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/manifest"
)

var pin = "@sha256:" + strings.Repeat("ab", 32)

func TestPinnedImage(t *testing.T) {
	for _, tc := range []struct {
		ref  string
		want bool
	}{
		{"ghcr.io/org/app" + pin, true},
		{"app:1.2" + pin, true},
		{"sha256:" + strings.Repeat("0f", 32), true},
		{"app:1.2", false},
		{"app", false},
		{"app@sha256:abc", false},                         // too short
		{"app@sha256:" + strings.Repeat("AB", 32), false}, // upper case is not a digest
		{"sha256:" + strings.Repeat("0f", 31), false},     // 62 digits
		{"app" + pin + "x", false},                        // trailing garbage
		{"sha512:" + strings.Repeat("0f", 32), false},     // another algorithm
		{"app@sha256:" + strings.Repeat("ab", 32) + ":", false},
	} {
		if got := PinnedImage(tc.ref); got != tc.want {
			t.Errorf("PinnedImage(%q) = %v, want %v", tc.ref, got, tc.want)
		}
	}
}

func TestImageRepository(t *testing.T) {
	for ref, want := range map[string]string{
		"node:22":                "docker.io/library/node:22",
		"org/app" + pin:          "docker.io/org/app" + pin,
		"GHCR.io/org/app:1":      "ghcr.io/org/app:1",
		"localhost/app":          "localhost/app",
		"registry:5000/team/app": "registry:5000/team/app",
		"docker.io/library/node": "docker.io/library/node",
	} {
		if got := ImageRepository(ref); got != want {
			t.Errorf("ImageRepository(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestDockerPrefixes(t *testing.T) {
	got := DockerPrefixes([]string{"https://GHCR.io", "http://registry:5000/team/", "ghcr.io/org/", "https://ghcr.io/"})
	want := []string{"ghcr.io", "registry:5000/team", "ghcr.io/org/"}
	if !slices.Equal(got, want) {
		t.Errorf("DockerPrefixes = %q, want %q", got, want)
	}
}

func TestMatchPrefix(t *testing.T) {
	for _, tc := range []struct {
		repo, prefix string
		want         bool
	}{
		{"ghcr.io/org/app" + pin, "ghcr.io/org/", true},
		{"ghcr.io/org/app" + pin, "ghcr.io/org", true},
		{"ghcr.io/org/app" + pin, "ghcr.io", true},
		{"ghcr.io/organisation/app", "ghcr.io/org", false},
		{"ghcr.io/organisation/app", "ghcr.io/org/", false},
		{"ghcr.io.evil.example/app", "ghcr.io", false},
		{"ghcr.io:8443/app", "ghcr.io", false}, // a port makes another registry
		{"ghcr.io/org/app:1", "ghcr.io/org/app", true},
		{"ghcr.io/org/app" + pin, "ghcr.io/org/app", true},
		{"ghcr.io/org/application", "ghcr.io/org/app", false},
	} {
		if got := matchPrefix(tc.repo, tc.prefix); got != tc.want {
			t.Errorf("matchPrefix(%q, %q) = %v, want %v", tc.repo, tc.prefix, got, tc.want)
		}
	}
}

// TestDockerForProcess is the policy half of running process services on
// docker: the candidate is added only for node, python and exec, and only
// chosen where prefer_drivers.docker lists the language.
func TestDockerForProcess(t *testing.T) {
	node := Node{Drivers: map[string]DriverInfo{
		"process": {Enabled: true, Network: true, Languages: []string{"node", "python", "exec"}},
		"docker":  {Enabled: true, Network: true, Languages: []string{"node", "exec"}},
	}}
	admit := func(t *testing.T, prefer map[string][]string, lang string, n Node) Decision {
		t.Helper()
		p := DefaultPolicy()
		p.PreferDrivers = prefer
		c, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.Check([]byte("name: s\nversion: 1.0.0\nruntime: {driver: process, language: "+lang+", entry: main}\n"), manifest.YAML)
		if err != nil {
			t.Fatal(err)
		}
		return c.Admit(Submission{Manifest: m}, n)
	}
	for _, tc := range []struct {
		name   string
		prefer map[string][]string
		lang   string
		want   string
	}{
		{"no preference", nil, "node", "process"},
		{"docker preferred", map[string][]string{"docker": {"node"}}, "node", "docker"},
		{"exec preferred", map[string][]string{"docker": {"exec"}}, "exec", "docker"},
		{"other language preferred", map[string][]string{"docker": {"exec"}}, "node", "process"},
		{"both preferred: its own driver first", map[string][]string{"docker": {"node"}, "process": {"node"}}, "node", "process"},
		{"no runtime image for python", map[string][]string{"docker": {"python"}}, "python", "process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := admit(t, tc.prefer, tc.lang, node)
			if d.Verdict != Run || d.Driver != tc.want {
				t.Errorf("verdict %s on %s, want run on %s: %s", d.Verdict, d.Driver, tc.want, reasonOf(d, "driver").Detail)
			}
		})
	}
	t.Run("docker disabled, process preferred elsewhere", func(t *testing.T) {
		n := Node{Drivers: map[string]DriverInfo{
			"process": {Enabled: false, Reason: "no cgroups"},
			"docker":  {Enabled: false, Reason: "engine not reachable"},
		}}
		d := admit(t, map[string][]string{"docker": {"node"}}, "node", n)
		r := reasonOf(d, "driver")
		if d.Verdict != Reject || r.OK || !strings.Contains(r.Detail, "driver process is disabled on this node: no cgroups") || !strings.Contains(r.Detail, "driver docker is disabled on this node: engine not reachable") {
			t.Errorf("verdict %s, driver reason %+v", d.Verdict, r)
		}
	})
	t.Run("not preferred: docker is not named", func(t *testing.T) {
		n := Node{Drivers: map[string]DriverInfo{"process": {Enabled: false, Reason: "no cgroups"}}}
		d := admit(t, nil, "node", n)
		if r := reasonOf(d, "driver"); d.Verdict != Reject || strings.Contains(r.Detail, "docker") {
			t.Errorf("verdict %s, driver reason %+v: docker was not a candidate", d.Verdict, r)
		}
	})
}
