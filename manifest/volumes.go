package manifest

import (
	"path"
	"regexp"
	"strings"

	"github.com/andromeda-runner/andromeda/strictdoc"
)

// Volume is a directory a service keeps across runs and versions: the node
// stores it per service (never shared with another service), shows it to
// the guest at Path (wasm: a preopened directory; process: a read-write
// mount) and caps what it holds at Size. Files move in and out with
// `andromeda cp` (docs/design.md section 5, "Volumes").
//
//	volumes:
//	  - {name: out, path: /out, size: 64Mi}
type Volume struct {
	// Name identifies the volume within the service: [a-z0-9-], 1 to 63
	// characters, starting with a letter; unique. Required.
	Name string `json:"name" yaml:"name"`
	// Path is where the guest sees the volume: an absolute, clean path
	// (no '.', '..' or empty segment, no trailing '/'), at most 256
	// characters of [A-Za-z0-9._~-] segments, not '/', not inside or
	// above another volume's path, and not one of the paths a sandbox
	// needs (ReservedPaths) or inside one. Unique. Required.
	Path string `json:"path" yaml:"path"`
	// Size is the most the volume may hold, between 4Ki and 16Gi; the
	// node's policy (max_volume_size) may refuse less. Usage counts each
	// file's size rounded up to whole 4 KiB blocks (at least one) and one
	// block for every other entry (directory, link), so a volume also
	// bounds how many entries it holds. Required.
	Size Bytes `json:"size" yaml:"size"`
}

// Bounds of volumes.
const (
	maxVolumes       = 8
	maxVolumePathLen = 256
	minVolumeSize    = 4 << 10
	maxVolumeSize    = 16 << 30
)

// ReservedPaths are the guest paths no volume may be at or inside: what a
// process sandbox mounts for its programs, libraries, service, shim,
// dependencies and scratch, the kernel's file systems, and where a docker
// container sees the node's relay (its binary and socket).
var ReservedPaths = []string{
	"/.andromeda-relay", "/bin", "/boot", "/deps", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
	"/node_modules", "/proc", "/run", "/runtime", "/sbin", "/service", "/sys", "/tmp", "/usr",
}

var volumeSegmentRE = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

// normalizeVolumes trims names and paths and turns an empty list into nil.
func (s *Service) normalizeVolumes() {
	for i := range s.Volumes {
		s.Volumes[i].Name = strings.TrimSpace(s.Volumes[i].Name)
		s.Volumes[i].Path = strings.TrimSpace(s.Volumes[i].Path)
	}
	if len(s.Volumes) == 0 {
		s.Volumes = nil
	}
}

func (v *validator) volumes(vols []Volume) {
	if len(vols) > maxVolumes {
		v.fail("volumes", "at most %d allowed, got %d", maxVolumes, len(vols))
	}
	names := map[string]int{}
	var paths []string // valid paths so far, by index; "" for an invalid one
	for i, vol := range vols {
		p := strictdoc.IndexPath("volumes", i)
		switch {
		case vol.Name == "":
			v.fail(p+".name", "required")
		case !nameRE.MatchString(vol.Name):
			v.fail(p+".name", "must match [a-z0-9-]{1,63}, start with a letter, not end with '-'")
		default:
			if j, dup := names[vol.Name]; dup {
				v.fail(p+".name", "duplicate of %s", strictdoc.IndexPath("volumes", j))
			} else {
				names[vol.Name] = i
			}
		}
		paths = append(paths, "")
		if rule := volumePathRule(vol.Path); rule != "" {
			v.fail(p+".path", "%s", rule)
		} else {
			for j, other := range paths[:i] {
				switch {
				case other == vol.Path:
					v.fail(p+".path", "duplicate of %s", strictdoc.IndexPath("volumes", j)+".path")
				case other != "" && (within(vol.Path, other) || within(other, vol.Path)):
					v.fail(p+".path", "must not be inside or above %s (%s)", strictdoc.IndexPath("volumes", j)+".path", other)
				default:
					continue
				}
				break
			}
			paths[i] = vol.Path
		}
		switch n, err := parseBytes(vol.Size.raw); {
		case vol.Size.IsZero():
			v.fail(p+".size", "required")
		case err != nil && err != errRange:
			v.fail(p+".size", bytesRule)
		case err != nil || n < minVolumeSize || n > maxVolumeSize:
			v.fail(p+".size", "must be between 4Ki and 16Gi")
		}
	}
}

// volumePathRule returns the rule a volume path breaks, or "".
func volumePathRule(p string) string {
	switch {
	case p == "":
		return "required"
	case !strings.HasPrefix(p, "/"):
		return "must be absolute"
	case p == "/":
		return "must not be /: the sandbox's own files live there"
	case len(p) > maxVolumePathLen:
		return "must be at most 256 characters"
	case path.Clean(p) != p:
		return "must be clean: no '.', '..' or empty segment and no trailing '/'"
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if !volumeSegmentRE.MatchString(seg) {
			return "must use only [A-Za-z0-9._~-] in each segment"
		}
	}
	for _, r := range ReservedPaths {
		if p == r || within(p, r) {
			return "must not be at or inside " + r + ": the sandbox needs it"
		}
	}
	return ""
}

// within reports whether p is strictly inside dir.
func within(p, dir string) bool { return strings.HasPrefix(p, dir+"/") }
