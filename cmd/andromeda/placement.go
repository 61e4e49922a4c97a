package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/andromeda-runner/andromeda/api"
)

// printPlacement writes inspect's Placement line: where a service deployed
// in containers runs, in which image, and why. Nothing for a service
// without one.
func printPlacement(w io.Writer, p *api.Placement) {
	if p == nil {
		return
	}
	where := "no container"
	if len(p.Containers) > 0 {
		where = strings.Join(p.Containers, ", ")
	}
	line := p.Kind + " in " + where
	if p.Image != "" {
		line += ", image " + p.Image
	}
	if p.Reason != "" {
		line += ": " + p.Reason
	}
	fmt.Fprintf(w, "Placement:\t%s\n", line)
}
