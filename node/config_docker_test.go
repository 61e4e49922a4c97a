package node_test

import (
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
)

// TestDockerConfigErrors: every bad key of the docker section is reported
// with its path and rule, all of them at once.
func TestDockerConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"scheme", "docker: {host: 'http://localhost:2375'}\n", []string{"docker.host: must be unix:// or tcp://"}},
		{"bare path", "docker: {host: /var/run/docker.sock}\n", []string{"docker.host: must be unix:// or tcp://"}},
		{"relative socket", "docker: {host: 'unix://run/docker.sock'}\n", []string{"docker.host: must be unix:///absolute/path or tcp://host:port: the socket path must be absolute"}},
		{"tcp without port", "docker: {host: 'tcp://docker.internal'}\n", []string{"docker.host: must be unix:///absolute/path or tcp://host:port: want tcp://host:port"}},
		{"tls on unix", "docker: {host: 'unix:///var/run/docker.sock', tls: {ca: ca.pem}}\n", []string{"docker.tls: only for a tcp:// docker.host"}},
		{"cert without key", "docker: {host: 'tcp://d:2376', tls: {cert: c.pem}}\n", []string{"docker.tls.ca: required: set ca, cert and key together, or none", "docker.tls.key: required"}},
		{"key without cert", "docker: {host: 'tcp://d:2376', tls: {ca: ca.pem, key: k.pem}}\n", []string{"docker.tls.cert: required: set ca, cert and key together"}},
		{"image", "docker: {images: {node: 'Node 22'}}\n", []string{"docker.images.node: must be an image reference"}},
		{"unknown language", "docker: {images: {ruby: 'ruby:3'}}\n", []string{`docker.images.ruby: unknown field "ruby"`}},
		{"root", "docker: {user: '0:0'}\n", []string{"docker.user: must not be root"}},
		{"root by name", "docker: {user: root}\n", []string{"docker.user: must not be root"}},
		{"user", "docker: {user: 'a b'}\n", []string{"docker.user: must be UID:GID, both numbers"}},
		{"user by name", "docker: {user: 'nobody:nogroup'}\n", []string{"docker.user: must be UID:GID, both numbers"}},
		{"root group", "docker: {user: '1000:0'}\n", []string{"docker.user: must not be root"}},
		{"empty user", "docker: {user: ''}\n", []string{"docker.user: must not be empty"}},
		{"scratch", "docker: {scratch: 1k}\n", []string{"docker.scratch: must be from 1Mi to 4Gi"}},
		{"scratch word", "docker: {scratch: lots}\n", []string{"docker.scratch: must be a size"}},
		{"enabled", "docker: {enabled: maybe}\n", []string{"docker.enabled: must be true or false"}},
		{"registries belong to the policy", "docker: {registries: ['ghcr.io/org/']}\n", []string{`docker.registries: unknown field "registries"`}},
		{"policy image source", "policy: {registries: {docker: ['GHCR.io/Org']}}\n", []string{"policy.registries.docker[0]: must be an http or https registry URL (https://ghcr.io) or an image reference prefix"}},
		{"policy fallback", "policy: {container_fallback: wait}\n", []string{"policy.container_fallback: must be new or refuse"}},
		{"policy tags", "policy: {images: {allow_tags: 1}}\n", []string{"policy.images.allow_tags: must be true or false"}},
		{"every problem", "docker: {host: 'ssh://x', user: root, scratch: 0}\n", []string{"docker.host:", "docker.user:", "docker.scratch:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := node.ParseConfig([]byte(tc.in), false)
			if err == nil {
				t.Fatalf("ParseConfig(%q) = nil error, want %q", tc.in, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseConfig(%q) =\n%v\nwant it to contain %q", tc.in, err, w)
				}
			}
		})
	}
	cfg, err := node.ParseConfig([]byte("docker: {host: 'tcp://docker.internal:2376', tls: {ca: ca.pem, cert: c.pem, key: k.pem}, images: {exec: 'sha256:"+strings.Repeat("a", 64)+"'}, scratch: 16Mi}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Docker
	if !d.Enabled || d.Host != "tcp://docker.internal:2376" || d.User != node.DefaultDockerUser || d.Scratch != "16Mi" || len(d.Images.Map()) != 1 {
		t.Errorf("docker = %+v", d)
	}
	if def := node.DefaultConfig().Docker; !def.Enabled || def.Host != "" || def.User != "65534:65534" || def.Scratch != "64Mi" {
		t.Errorf("default docker = %+v", def)
	}
}
