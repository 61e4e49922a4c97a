package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
	"github.com/andromeda-runner/andromeda/strictdoc"
)

// A service's config (the manifest's config, every run's input.config)
// changes without a new version: andromeda config set, PATCH
// /v1/services/{name}/config with a JSON merge patch. Each change is a
// deployment revision, recorded like a version: the service record counts
// revisions (a submitted version is one too), keeps the newest
// store.MaxRevisions of them with who made each and when, and keeps each
// revision's config in the artifact store under its digest; every run
// records the revision it ran with. A change is judged like a submission:
// the manifest with the new config is validated and admitted by the
// policy in force, and one either refuses changes nothing. The running
// deployment is kept (the code did not change): runs that start after the
// change get the new config, runs in flight finish with the one they got.

// Revision changes.
const (
	changeSubmit = "submit"
	changeConfig = "config"
)

// liveConfig is the config a deployed service's next runs get, and the
// revision it belongs to. A deployed holds one from its start; a config
// change swaps it.
type liveConfig struct {
	revision int
	config   map[string]any
}

// runConfig is the config a run about to be invoked gets: the newest the
// service has. It records the revision on run.
func (d *deployed) runConfig(run *store.Run) map[string]any {
	lc := d.live.Load()
	if lc == nil {
		return d.manifest.Config
	}
	run.Revision = lc.revision
	return lc.config
}

// svcConfigDoc names a service config patch in errors about it as a whole.
type svcConfigDoc struct{}

// Name returns "config".
func (svcConfigDoc) Name() string { return "config" }

// configStrict reads config patches and stored configs: by package
// strictdoc's rules, as a manifest's config is read.
var configStrict = strictdoc.Decoder[svcConfigDoc]{MaxSize: manifest.MaxSize, MaxDepth: 63}

// configDigest is "sha256:" and the hex SHA-256 of a config's canonical
// JSON (json.Marshal sorts keys); a nil config is {}.
func configDigest(cfg map[string]any) (string, []byte, error) {
	if cfg == nil {
		cfg = map[string]any{}
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("encode config: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), b, nil
}

// decodeConfig reads a config's canonical JSON into the values a
// manifest's config holds (numbers as int64 or float64).
func decodeConfig(b []byte) (map[string]any, error) {
	var cfg map[string]any
	if err := configStrict.Decode(strictdoc.JSON, b, &cfg); err != nil {
		return nil, err
	}
	if len(cfg) == 0 {
		return nil, nil
	}
	return cfg, nil
}

// recordConfig is the config of a service record: its manifest's.
func recordConfig(rec store.Service) (map[string]any, error) {
	var m struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(rec.Manifest, &m); err != nil {
		return nil, fmt.Errorf("stored manifest of %s: %w", rec.Name, err)
	}
	if len(m.Config) == 0 {
		return nil, nil
	}
	cfg, err := decodeConfig(m.Config)
	if err != nil {
		return nil, fmt.Errorf("stored config of %s: %w", rec.Name, err)
	}
	return cfg, nil
}

// useRecordConfig gives m, the manifest of a service's unpacked archive,
// the config of its record: the newest revision's, which a config change
// may have made other than the archive's.
func useRecordConfig(rec store.Service, m *manifest.Service) error {
	if len(rec.Manifest) == 0 {
		return nil
	}
	cfg, err := recordConfig(rec)
	if err != nil {
		return err
	}
	m.Config = cfg
	return nil
}

// reviseOnSubmit makes rec, a submission about to be stored, the next
// revision of its service (prev, when it exists), with the config of its
// manifest m, submitted by by, and stores that config under its digest.
func (n *Node) reviseOnSubmit(ctx context.Context, rec *store.Service, prev store.Service, exists bool, m *manifest.Service, by string) error {
	digest, b, err := configDigest(m.Config)
	if err != nil {
		return err
	}
	if err := n.store.PutArtifact(ctx, digest, b); err != nil {
		return err
	}
	rec.Revision, rec.ConfigDigest = 1, digest
	if exists {
		rec.Revision = prev.Revision + 1
		rec.Revisions = prev.Revisions
	}
	rec.Revisions = appendRevision(rec.Revisions, store.Revision{
		Revision: rec.Revision, Change: changeSubmit, Version: rec.Version, Digest: rec.Digest,
		ConfigDigest: digest, By: by, At: rec.SubmittedAt,
	})
	return nil
}

// appendRevision adds r to a record's revisions, keeping the newest
// store.MaxRevisions, in a new slice.
func appendRevision(revs []store.Revision, r store.Revision) []store.Revision {
	out := append(slices.Clone(revs), r)
	if len(out) > store.MaxRevisions {
		out = out[len(out)-store.MaxRevisions:]
	}
	return out
}

// mergePatch applies a JSON merge patch (RFC 7396) to target and returns
// the result, without modifying target: a null removes the key, an object
// merges into the object there, anything else replaces it.
func mergePatch(target any, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, _ := target.(map[string]any)
	out := make(map[string]any, len(tm)+len(pm))
	maps.Copy(out, tm)
	for k, v := range pm {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}

// ServiceConfig implements server.ConfigBackend: a service's config at
// revision (0: the current one), for its owner and the operator.
func (n *Node) ServiceConfig(ctx context.Context, p server.Principal, name string, revision int) (api.ServiceConfig, error) {
	rec, err := n.owned(ctx, p, name)
	if err != nil {
		return api.ServiceConfig{}, err
	}
	if revision == 0 || revision == rec.Revision {
		cfg, err := recordConfig(rec)
		if err != nil {
			return api.ServiceConfig{}, err
		}
		digest, _, err := configDigest(cfg)
		if err != nil {
			return api.ServiceConfig{}, err
		}
		return api.ServiceConfig{Service: name, Revision: rec.Revision, Digest: digest, Config: cfg, Current: true}, nil
	}
	i := slices.IndexFunc(rec.Revisions, func(r store.Revision) bool { return r.Revision == revision })
	if i < 0 {
		kept := "none"
		if len(rec.Revisions) > 0 {
			kept = fmt.Sprintf("%d to %d", rec.Revisions[0].Revision, rec.Revisions[len(rec.Revisions)-1].Revision)
		}
		return api.ServiceConfig{}, fmt.Errorf("revision %d of %s: %w (the revisions kept are %s)", revision, name, store.ErrNotFound, kept)
	}
	r := rec.Revisions[i]
	b, err := n.store.Artifact(ctx, r.ConfigDigest)
	if err != nil {
		return api.ServiceConfig{}, fmt.Errorf("config of revision %d of %s: %w", revision, name, err)
	}
	cfg, err := decodeConfig(b)
	if err != nil {
		return api.ServiceConfig{}, fmt.Errorf("config of revision %d of %s: %w", revision, name, err)
	}
	return api.ServiceConfig{Service: name, Revision: revision, Digest: r.ConfigDigest, Config: cfg}, nil
}

// ConfigHistory implements server.ConfigBackend: a service's revisions,
// oldest first, for its owner and the operator.
func (n *Node) ConfigHistory(ctx context.Context, p server.Principal, name string) ([]api.ConfigRevision, error) {
	rec, err := n.owned(ctx, p, name)
	if err != nil {
		return nil, err
	}
	out := make([]api.ConfigRevision, len(rec.Revisions))
	for i, r := range rec.Revisions {
		out[i] = api.ConfigRevision{
			Revision: r.Revision, Change: r.Change, Version: r.Version, Digest: r.Digest,
			ConfigDigest: r.ConfigDigest, Keys: r.Keys, By: r.By, At: r.At, Current: r.Revision == rec.Revision,
		}
	}
	return out, nil
}

// SetConfig implements server.ConfigBackend: it applies patch, a JSON
// merge patch, to the service's config as a new revision, for its owner
// and the operator. A patch that changes nothing answers the current
// config and makes no revision. Each problem with the patch or the config
// it makes is an ErrInvalid naming the key; a config the policy refuses is
// an ErrRefused with the decision; either changes nothing.
func (n *Node) SetConfig(ctx context.Context, p server.Principal, name string, patch []byte, o api.SubmitOptions) (api.ServiceConfig, error) {
	var pm map[string]any
	if err := configStrict.Decode(strictdoc.JSON, patch, &pm); err != nil {
		return api.ServiceConfig{}, configError("invalid config patch", err)
	}
	if r, done, err := forwardService[api.ServiceConfig](ctx, n, p, serviceCall{Op: "config", Service: name, Patch: patch, Options: o}); done {
		return r, err
	}
	if err := n.notPlacedHere(name); err != nil {
		return api.ServiceConfig{}, err
	}
	n.submitMu.Lock()
	defer n.submitMu.Unlock()
	rec, err := n.owned(ctx, p, name)
	if err != nil {
		return api.ServiceConfig{}, err
	}
	m, err := previousManifest(rec)
	if err != nil {
		return api.ServiceConfig{}, err
	}
	cur, _, err := configDigest(m.Config)
	if err != nil {
		return api.ServiceConfig{}, err
	}
	next := *m
	next.Config, _ = mergePatch(m.Config, pm).(map[string]any)
	next.Normalize()
	if err := next.Validate(); err != nil {
		return api.ServiceConfig{}, configError("invalid config", err)
	}
	digest, b, err := configDigest(next.Config)
	if err != nil {
		return api.ServiceConfig{}, err
	}
	if digest == cur {
		return api.ServiceConfig{Service: name, Revision: rec.Revision, Digest: digest, Config: next.Config, Current: true}, nil
	}

	pol := n.Policy()
	sub, err := n.submission(ctx, &next, rec.Digest, rec.Size, o)
	if err != nil {
		return api.ServiceConfig{}, err
	}
	sub.Previous = m
	view, err := n.policyView(ctx)
	if err != nil {
		return api.ServiceConfig{}, err
	}
	view.Services-- // the service replaces itself
	if view.Targets[next.Target] == name {
		delete(view.Targets, next.Target)
	}
	decision := n.decide(ctx, p, pol, &sub, view)
	if decision.Verdict != policy.Run {
		n.log.Info("config change refused", logService, name, "verdict", decision.Verdict)
		return api.ServiceConfig{}, decisionError(&next, decision)
	}
	if decision.Driver != rec.Decision.Driver || decision.Dormant != rec.Decision.Dormant || !reflect.DeepEqual(decision.Limits, rec.Decision.Limits) {
		return api.ServiceConfig{}, server.Errorf(server.ErrConflict, "the policy in force now decides %s otherwise than when it was deployed (driver, limits or dormancy): submit it again to redeploy it, then change its config", name)
	}

	canon, err := json.Marshal(&next)
	if err != nil {
		return api.ServiceConfig{}, fmt.Errorf("encode manifest: %w", err)
	}
	if err := n.store.PutArtifact(ctx, digest, b); err != nil {
		return api.ServiceConfig{}, err
	}
	keys := slices.Sorted(maps.Keys(pm))
	rec.Manifest = canon
	rec.Revision++
	rec.ConfigDigest = digest
	rec.Revisions = appendRevision(rec.Revisions, store.Revision{
		Revision: rec.Revision, Change: changeConfig, Version: rec.Version, Digest: rec.Digest,
		ConfigDigest: digest, Keys: keys, By: p.Name, At: time.Now().UTC(),
		Receipt: n.receipt(pol, sub, decision),
	})
	if err := n.store.PutService(ctx, rec); err != nil {
		return api.ServiceConfig{}, err
	}
	if d := n.lookup(name); d != nil && d.rec.Digest == rec.Digest {
		d.deployMu.Lock()
		d.rec.Manifest, d.rec.Revision, d.rec.ConfigDigest, d.rec.Revisions = rec.Manifest, rec.Revision, rec.ConfigDigest, rec.Revisions
		d.live.Store(&liveConfig{revision: rec.Revision, config: next.Config})
		d.deployMu.Unlock()
	}
	n.log.Info("config changed", logService, name, "revision", rec.Revision, "config_digest", digest, "keys", keys, "by", p.Name)
	return api.ServiceConfig{Service: name, Revision: rec.Revision, Digest: digest, Config: next.Config, Current: true}, nil
}

// configError is a bad patch or config as an ErrInvalid naming each
// problem, paths under config.
func configError(msg string, err error) error {
	e := &server.Error{Kind: server.ErrInvalid, Msg: msg}
	var pe strictdoc.Errors[svcConfigDoc]
	var me manifest.Errors
	switch {
	case errors.As(err, &pe):
		for _, fe := range strictdoc.Nest[svcConfigDoc]("config", pe) {
			e.Problems = append(e.Problems, fe.Error())
		}
	case errors.As(err, &me):
		for _, fe := range me {
			e.Problems = append(e.Problems, fe.Error())
		}
	default:
		e.Problems = []string{err.Error()}
	}
	e.Msg += ": " + e.Problems[0]
	return e
}
