package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Reap removes the containers labelled with this node (Config.Node) that
// no deployment of this Driver owns: the leftovers of a node that crashed
// or was killed. The node calls it at start, after Test. It returns the
// names of the containers it removed; the error joins those it could not.
func (d *Driver) Reap(ctx context.Context) (removed []string, err error) {
	if _, err := d.ready(); err != nil {
		return nil, fmt.Errorf("reap: %w", err)
	}
	removed, err = d.removeWhere(ctx, func(labels map[string]string, name string) bool {
		if labels[LabelInstance] != d.instance {
			return true
		}
		d.mu.Lock()
		_, live := d.names[name]
		d.mu.Unlock()
		return !live
	})
	for _, name := range removed {
		d.cfg.Logger.Info("docker driver: removed a leftover container", "container", name)
	}
	if err != nil {
		return removed, fmt.Errorf("reap: %w", err)
	}
	return removed, nil
}

// removeWhere force-removes the containers labelled with this node for
// which remove says so, and returns their names.
func (d *Driver) removeWhere(ctx context.Context, remove func(labels map[string]string, name string) bool) ([]string, error) {
	cli, err := d.client()
	if err != nil {
		return nil, err
	}
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelNode+"="+d.cfg.Node),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list containers: %v", ErrEngine, err)
	}
	var removed []string
	var errs []error
	for _, c := range list.Items {
		name := c.ID[:12]
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		if c.Labels[LabelNode] != d.cfg.Node || !remove(c.Labels, name) {
			continue
		}
		_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		switch {
		case err == nil:
			removed = append(removed, name)
			d.forget(name)
		case !cerrdefs.IsNotFound(err):
			errs = append(errs, fmt.Errorf("remove container %s: %w", name, err))
		}
	}
	return removed, errors.Join(errs...)
}
