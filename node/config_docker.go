package node

import (
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"strings"
)

// DockerConfig configures the docker driver, the node config's docker
// section. Where images may be pulled from is the policy's
// registries.docker, not a setting here.
//
//	docker:
//	  enabled: true
//	  host: unix:///var/run/docker.sock   # or tcp://host:2376
//	  tls: {ca: ca.pem, cert: cert.pem, key: key.pem}
//	  images: {node: REF, python: REF, exec: REF}
//	  user: "65534:65534"
//	  scratch: 64Mi
type DockerConfig struct {
	// Enabled builds the docker driver into the node. It is enabled when
	// its engine answers its self-test at start (and andromeda selftest);
	// an engine that does not answer disables it, with the reason in the
	// node's offer and log. Default true; false leaves it out.
	Enabled bool `json:"enabled" yaml:"enabled"`
	// Host is the engine's address, as DOCKER_HOST writes it (the KLYNTAR
	// import's docker.host): unix:///path or tcp://host:port. Default "":
	// DOCKER_HOST, else the engine's default socket.
	Host string `json:"host" yaml:"host"`
	// TLS is the client TLS for a tcp:// host; all empty: none.
	TLS DockerTLS `json:"tls" yaml:"tls"`
	// Images are the runtime images archive services of each language run
	// in when their decision picked docker (a process service whose
	// language prefer_drivers.docker lists). A language without one is
	// not offered on docker. Default none.
	Images DockerImages `json:"images" yaml:"images"`
	// User is the user new containers run as, UID:GID, numeric (an image's
	// user names mean nothing on the host); never root. Default
	// "65534:65534" (nobody).
	User string `json:"user" yaml:"user"`
	// Scratch is the size of the writable tmpfs at /tmp in each container,
	// 1Mi to 4Gi. Default 64Mi.
	Scratch string `json:"scratch" yaml:"scratch"`
}

// DockerTLS is the client TLS the node speaks to a tcp:// engine with:
// files of PEM, all three or none.
type DockerTLS struct {
	// CA verifies the engine's certificate.
	CA string `json:"ca" yaml:"ca"`
	// Cert and Key are the client certificate and its key.
	Cert string `json:"cert" yaml:"cert"`
	Key  string `json:"key" yaml:"key"`
}

// DockerImages names the runtime image of each process language the docker
// driver runs archive services of.
type DockerImages struct {
	// Node is the image Node.js services run in: a reference the engine
	// has or can pull. Default "": none.
	Node string `json:"node" yaml:"node"`
	// Python is the image Python services run in. Default "": none.
	Python string `json:"python" yaml:"python"`
	// Exec is the image executables (language exec) run in. Default "":
	// none.
	Exec string `json:"exec" yaml:"exec"`
}

// Map returns the images by language, without the empty ones.
func (i DockerImages) Map() map[string]string {
	m := map[string]string{}
	for lang, ref := range map[string]string{"node": i.Node, "python": i.Python, "exec": i.Exec} {
		if ref != "" {
			m[lang] = ref
		}
	}
	return m
}

// Defaults of DockerConfig.
const (
	DefaultDockerUser    = "65534:65534"
	DefaultDockerScratch = "64Mi"
)

// DefaultDockerConfig returns the docker section's defaults.
func DefaultDockerConfig() DockerConfig {
	return DockerConfig{Enabled: true, User: DefaultDockerUser, Scratch: DefaultDockerScratch}
}

var (
	dockerImageRE = regexp.MustCompile(`^[a-z0-9][A-Za-z0-9._/:@-]*$`)
	dockerUserRE  = regexp.MustCompile(`^[0-9]{1,10}:[0-9]{1,10}$`)
)

// Validate checks every key, naming each problem's path (docker.host: ...).
func (c DockerConfig) Validate() error {
	var errs []error
	bad := func(key, rule string) { errs = append(errs, fmt.Errorf("docker.%s: %s", key, rule)) }
	tcp := false
	switch h := c.Host; {
	case h == "":
	case strings.HasPrefix(h, "unix://"):
		if p := strings.TrimPrefix(h, "unix://"); !path.IsAbs(p) || path.Clean(p) != p {
			bad("host", "must be unix:///absolute/path or tcp://host:port: the socket path must be absolute and clean")
		}
	case strings.HasPrefix(h, "tcp://"):
		tcp = true
		host, port, err := net.SplitHostPort(strings.TrimPrefix(h, "tcp://"))
		if err != nil || host == "" || port == "" || strings.ContainsAny(host, "/?#@") {
			bad("host", "must be unix:///absolute/path or tcp://host:port: want tcp://host:port")
		}
	default:
		bad("host", "must be unix:// or tcp://, e.g. unix:///var/run/docker.sock or tcp://docker.internal:2376")
	}
	t := c.TLS
	if t != (DockerTLS{}) && !tcp {
		bad("tls", "only for a tcp:// docker.host")
	}
	for _, f := range []struct{ key, v string }{{"ca", t.CA}, {"cert", t.Cert}, {"key", t.Key}} {
		switch {
		case f.v == "" && t != (DockerTLS{}):
			bad("tls."+f.key, "required: set ca, cert and key together, or none")
		case strings.ContainsRune(f.v, 0):
			bad("tls."+f.key, "must be a file name")
		}
	}
	for _, im := range []struct{ lang, ref string }{{"node", c.Images.Node}, {"python", c.Images.Python}, {"exec", c.Images.Exec}} {
		if im.ref != "" && (len(im.ref) > 256 || !dockerImageRE.MatchString(im.ref)) {
			bad("images."+im.lang, "must be an image reference (REF@sha256:<hex>, REF:TAG or an image ID sha256:<hex>), at most 256 characters")
		}
	}
	switch uid, gid, _ := strings.Cut(c.User, ":"); {
	case c.User == "":
		bad("user", "must not be empty (default "+DefaultDockerUser+")")
	case uid == "root" || strings.Trim(uid, "0") == "" || strings.Trim(gid, "0") == "" && dockerUserRE.MatchString(c.User):
		bad("user", "must not be root (0): containers run as an unprivileged user")
	case !dockerUserRE.MatchString(c.User):
		bad("user", "must be UID:GID, both numbers, like "+DefaultDockerUser)
	}
	if n, err := parseBytes(c.Scratch); err != nil {
		bad("scratch", err.Error())
	} else if n < 1<<20 || n > 4<<30 {
		bad("scratch", "must be from 1Mi to 4Gi")
	}
	return errors.Join(errs...)
}
