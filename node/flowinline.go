package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/flow"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// An inline module ({id, language, code}) runs as a service of its own,
// made by the node when the flow starts: named after the flow and the
// module, versioned by a hash of its language and code (the same code is
// the same version, so an update that does not change it keeps its warm
// workers), owned by the flow's owner, and submitted through the one
// admission path like any service, so the policy judges it. The service
// is the flow's: it goes when the flow is removed, or when a version of
// the flow that no longer has the module starts.

// inlineEntries are the entry file of an inline module's service, by
// language: the files the process driver's shims load.
var inlineEntries = map[string]string{"node": "index.js", "python": "main.py"}

// inlineName is the name of the service of inline module module of flow
// id: "<flow>-<module>", or, when that is longer than a service name may
// be, the flow's first 40 characters, a dash and a hash of both ids.
func inlineName(id, module string) string {
	if name := id + "-" + module; len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(id + "\x00" + module))
	prefix := id
	if len(prefix) > 40 {
		prefix = prefix[:40]
	}
	return prefix + "-" + hex.EncodeToString(sum[:])[:16]
}

// inlineTitle is the title of an inline module's service: what marks it
// as the flow's, so that a service of the same name that is not the
// flow's is never replaced.
func inlineTitle(id, module string) string {
	return fmt.Sprintf("inline module %s of flow %s", module, id)
}

// inlineVersion is the version of an inline module's service.
func inlineVersion(m flow.Module) string {
	sum := sha256.Sum256([]byte(m.Language + "\x00" + m.Code))
	return "0.0.0-inline-" + hex.EncodeToString(sum[:])[:16]
}

// resolveInline names, in fl, each inline module's service in place of
// its code.
func resolveInline(fl *flow.Flow) {
	for i, m := range fl.Modules {
		if m.Service == "" {
			fl.Modules[i].Service = inlineName(fl.ID, m.ID)
			fl.Modules[i].Language, fl.Modules[i].Code = "", ""
		}
	}
}

// makeInline submits the service of each inline module of fl for its
// owner, through the admission queue and the policy. It returns, as a
// 409 listing every one, the modules whose service could not be made:
// refused by the policy, a name another service holds, a language with no
// entry file.
func (n *Node) makeInline(ctx context.Context, owner string, fl *flow.Flow) error {
	p := ownerPrincipal(owner)
	e := server.Errorf(server.ErrConflict, "flow %s: inline modules not admitted", fl.ID)
	for i, m := range fl.Modules {
		if m.Service != "" {
			continue
		}
		if err := n.makeInlineModule(ctx, p, fl.ID, m); err != nil {
			e.Problems = append(e.Problems, fmt.Sprintf("modules[%d] (%s): %v", i, m.ID, err))
		}
	}
	if len(e.Problems) > 0 {
		return e
	}
	return nil
}

// makeInlineModule submits the service of inline module m of flow id.
func (n *Node) makeInlineModule(ctx context.Context, p server.Principal, id string, m flow.Module) error {
	name, title := inlineName(id, m.ID), inlineTitle(id, m.ID)
	entry, ok := inlineEntries[m.Language]
	if !ok {
		return fmt.Errorf("language %s: an inline module is node or python code", m.Language)
	}
	switch prev, err := n.store.Service(ctx, name); {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		if pm, err := previousManifest(prev); err != nil || pm.Title != title {
			return fmt.Errorf("its service would be %s, which is another service, not this flow's: rename the module", name)
		}
	}
	man := &manifest.Service{
		Name: name, Version: inlineVersion(m), Title: title,
		Description: fmt.Sprintf("Made by the node from the inline %s code of module %s of flow %s.", m.Language, m.ID, id),
		Runtime:     manifest.Runtime{Driver: manifest.DriverProcess, Language: m.Language, Entry: entry},
		Mode:        manifest.ModeServer,
	}
	man.Normalize()
	if err := man.Validate(); err != nil {
		return err
	}
	staging, err := n.tempDir("inline")
	if err != nil {
		return err
	}
	defer os.RemoveAll(staging)
	if err := os.WriteFile(filepath.Join(staging, entry), []byte(m.Code), 0o644); err != nil {
		return err
	}
	if err := writeManifest(staging, man); err != nil {
		return err
	}
	data, err := archive.Pack(staging)
	if err != nil {
		return err
	}
	res, err := n.queued(ctx, api.SubmitOptions{}, func(ctx context.Context) (api.SubmitResult, error) {
		return n.submitArchive(ctx, p, data, api.SubmitOptions{}, nil)
	})
	if err != nil {
		return err
	}
	if !res.Unchanged {
		n.log.Info("inline module admitted as a service", "flow", id, "module", m.ID, logService, name, "version", man.Version)
	}
	return nil
}

// removeInline removes the services of the inline modules of flow id that
// keep is not running (nil: all of them).
func (n *Node) removeInline(ctx context.Context, id string, was *flow.Flow, keep *flow.Flow) {
	kept := map[string]bool{}
	if keep != nil {
		for _, m := range keep.Modules {
			if m.Service == "" {
				kept[m.ID] = true
			}
		}
	}
	for _, m := range was.Modules {
		if m.Service != "" || kept[m.ID] {
			continue
		}
		name := inlineName(id, m.ID)
		prev, err := n.store.Service(ctx, name)
		if err != nil {
			continue
		}
		if pm, err := previousManifest(prev); err != nil || pm.Title != inlineTitle(id, m.ID) {
			continue
		}
		if err := n.RemoveService(ctx, name, false); err != nil && !errors.Is(err, store.ErrNotFound) {
			n.log.Warn("inline module's service not removed", "flow", id, "module", m.ID, logService, name, logErr, err)
		}
	}
}

// ownerPrincipal is the principal of a flow's owner.
func ownerPrincipal(owner string) server.Principal {
	p := server.Principal{Name: owner, Role: api.RoleSubmitter}
	if owner == operatorOwner {
		p.Role = api.RoleOperator
	}
	return p
}
