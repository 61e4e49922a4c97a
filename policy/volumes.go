package policy

import (
	"fmt"
	"strings"

	"github.com/andromeda-runner/andromeda/manifest"
)

// volumes holds the sum of the service's volume sizes to max_volume_size.
// A volume is never clamped: a guest would find less room than its
// manifest promised it, so a service asking for more is rejected.
func (a *admission) volumes() {
	limit := a.c.p.MaxVolumeSize
	vols := a.m.Volumes
	if len(vols) == 0 {
		a.add("max_volume_size", true, "no volumes (max_volume_size %s)", limit)
		return
	}
	var total int64
	parts := make([]string, 0, len(vols))
	for _, v := range vols {
		total += v.Size.Int64()
		parts = append(parts, fmt.Sprintf("%s %s", v.Name, v.Size))
	}
	what := fmt.Sprintf("volumes %s", strings.Join(parts, ", "))
	if len(vols) > 1 {
		what += fmt.Sprintf(": %s in all", sizeString(total))
	}
	if total > limit.Int64() {
		a.add("max_volume_size", false, "%s, above max_volume_size %s", what, limit)
		return
	}
	a.add("max_volume_size", true, "%s (max_volume_size %s)", what, limit)
}

// volumesGrowth lists the volumes new adds or makes larger than old.
func volumesGrowth(old, new *manifest.Service) []Growth {
	var g []Growth
	for _, n := range new.Volumes {
		grew := true
		from := ""
		for _, o := range old.Volumes {
			if o.Name == n.Name {
				from = o.Name + " " + o.Size.String()
				grew = n.Size.Int64() > o.Size.Int64()
			}
		}
		if grew {
			g = append(g, Growth{What: "volume", From: from, To: n.Name + " " + n.Size.String()})
		}
	}
	return g
}
