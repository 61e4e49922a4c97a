package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// Volumes (docs/design.md section 5, "Volumes"). A service's volume NAME lives in
// DATA/volumes/SERVICE/NAME, one directory per service and name: never
// another service's, kept across runs, versions, restarts and a stop, and
// removed with the service. Each driver shows it at the volume's path
// (wasm: a preopened directory whose writes are held to the size; process:
// a read-write bind mount). Whatever the driver, the node measures every
// volume before and after each run: a run that finds one over its size is
// refused, and a run that leaves one over its size ends as an error naming
// the volume and the size, its actions and state change dropped.

// volumesDir is where every service's volumes live.
func (n *Node) volumesDir() string { return filepath.Join(n.cfg.Data, "volumes") }

// volumeSpecs are the manifest's volumes as a driver shows them.
func (n *Node) volumeSpecs(service string, m *manifest.Service) []sandbox.Volume {
	if len(m.Volumes) == 0 {
		return nil
	}
	out := make([]sandbox.Volume, 0, len(m.Volumes))
	for _, v := range m.Volumes {
		out = append(out, sandbox.Volume{
			Name: v.Name, Path: v.Path, Size: v.Size.Int64(),
			Dir: filepath.Join(n.volumesDir(), service, v.Name),
		})
	}
	return out
}

// makeVolumes creates the volumes' directories that do not exist yet; the
// ones that do keep what they hold.
func makeVolumes(vols []sandbox.Volume) error {
	for _, v := range vols {
		if err := os.MkdirAll(v.Dir, 0o700); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	return nil
}

// removeVolumes deletes every volume of the service. Remove calls it: a
// removed service's files do not outlive it, and a new service of the same
// name starts empty.
func (n *Node) removeVolumes(service string) {
	if err := os.RemoveAll(filepath.Join(n.volumesDir(), service)); err != nil {
		n.log.Warn("remove volumes", logService, service, logErr, err)
	}
}

// volumesFull says why a run may not start: a volume over its size (left
// so by an earlier run, or by one of another driver that could not hold
// it). "" when every volume has room.
func (d *deployed) volumesFull() string {
	for _, v := range d.volumes {
		used, err := sandbox.VolumeUsage(v.Dir)
		if err != nil {
			return fmt.Sprintf("volume %s: measure: %v", v.Name, err)
		}
		if used > v.Size {
			return fmt.Sprintf("volume %s (%s) holds %s, above its size %s: runs are refused until files are removed (andromeda cp, or a DELETE of /v1/services/%s/files%s/FILE)",
				v.Name, v.Path, sizeText(used), sizeText(v.Size), d.rec.Name, v.Path)
		}
	}
	return ""
}

// volumesOver checks the volumes after a run: a run that left one over its
// size becomes an error naming it (its actions and state change are
// dropped); a guest that failed anyway keeps its outcome, with the volume
// named in its detail.
func (d *deployed) volumesOver(r *sandbox.Result) {
	for _, v := range d.volumes {
		used, err := sandbox.VolumeUsage(v.Dir)
		if err != nil || used <= v.Size {
			continue
		}
		msg := fmt.Sprintf("volume %s (%s): the run left %s in it, above its size %s; further runs are refused until it is under",
			v.Name, v.Path, sizeText(used), sizeText(v.Size))
		switch r.Outcome {
		case sandbox.OK, sandbox.Noop, sandbox.Rejected:
			r.Outcome, r.Error = sandbox.Error, msg
		default:
			r.Error = strings.TrimSpace(r.Error + "; " + msg)
		}
		return
	}
}

// volumeInfo is the volumes of a service as the API shows them, with what
// each holds now (Used -1 when it cannot be measured).
func volumeInfo(vols []sandbox.Volume) []api.Volume {
	if len(vols) == 0 {
		return nil
	}
	out := make([]api.Volume, 0, len(vols))
	for _, v := range vols {
		used, err := sandbox.VolumeUsage(v.Dir)
		if err != nil {
			used = -1
		}
		out = append(out, api.Volume{Name: v.Name, Path: v.Path, Size: v.Size, Used: used})
	}
	return out
}

// sizeText writes a byte count with the largest binary unit that keeps it
// readable, to a tenth: 4096 → 4Ki, 70254592 → 67Mi, 1100 → 1.1Ki, 100 →
// 100 bytes.
func sizeText(n int64) string {
	for _, u := range []struct {
		unit string
		size float64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if float64(n) >= u.size {
			return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/u.size), ".0") + u.unit
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
