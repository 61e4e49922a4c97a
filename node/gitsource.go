package node

import (
	"context"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/source"
)

// submitGit fetches a source.git service the policy admitted on its
// manifest, and submits the files at source.path of source.commit like an
// upload. The fetch happens in memory (nothing of the repository touches
// the data dir or runs), so a refusal leaves nothing behind; the caller
// holds submitMu.
func (n *Node) submitGit(ctx context.Context, p server.Principal, m *manifest.Service, lim archive.Limits, allowed []string, o api.SubmitOptions) (api.SubmitResult, error) {
	s := m.Source
	n.log.Info("fetching service source", logService, m.Name, "git", s.Git, "commit", s.Commit, "ref", s.Ref, "path", s.Path)
	data, err := source.FetchGit(ctx, source.GitOptions{
		Repo: s.Git, Commit: s.Commit, Ref: s.Ref, Path: s.Path, Digest: s.Digest,
		Client: n.httpClient(), Limits: lim, Allowed: allowed, Timeout: sourceFetchTimeout,
	})
	if err != nil {
		// 422 like a source.location that cannot be used, too large
		// included: the request itself was small.
		n.log.Info("service source refused", logService, m.Name, "git", s.Git, "commit", s.Commit, logErr, err)
		return api.SubmitResult{}, server.Errorf(server.ErrUnusable, "%v", err)
	}
	return n.submitArchive(ctx, p, data, o, m)
}
