package deps

import (
	"slices"
	"testing"
)

func TestRegistryHosts(t *testing.T) {
	for _, c := range []struct {
		m        *Manager
		registry string
		want     []string
		err      bool
	}{
		{NPM, "", []string{"registry.npmjs.org:443"}, false},
		{Pip, "", []string{"pypi.org:443", "files.pythonhosted.org:443"}, false},
		{Pip, "/srv/wheels", nil, false},
		{Pip, "http://127.0.0.1:3141/root/pypi/+simple/", []string{"127.0.0.1:3141"}, false},
		{NPM, "https://NPM.Example.com/", []string{"npm.example.com:443"}, false},
		{NPM, "http://user:secret@npm.example.com/", []string{"npm.example.com:80"}, false},
		{NPM, "http://[::1]:4873", []string{"[::1]:4873"}, false},
		{NPM, "ftp://npm.example.com/", nil, true},
		{NPM, "npm.example.com", nil, true},
	} {
		got, err := c.m.Hosts(c.registry)
		if !slices.Equal(got, c.want) || (err != nil) != c.err {
			t.Errorf("%s.Hosts(%q) = %q, %v; want %q, error %v", c.m.Language, c.registry, got, err, c.want, c.err)
		}
	}
}
