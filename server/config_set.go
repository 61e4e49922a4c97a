package server

import (
	"context"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/andromeda-runner/andromeda/api"
)

// ConfigBackend reads and changes a service's config (the manifest's
// config, every run's input.config) as deployment revisions. A Backend
// that implements it has GET and PATCH /v1/services/{name}/config and GET
// /v1/services/{name}/config/history, for the service's owner and the
// operator.
type ConfigBackend interface {
	// ServiceConfig is the config at revision, 0 for the current one.
	ServiceConfig(ctx context.Context, p Principal, name string, revision int) (api.ServiceConfig, error)
	// SetConfig applies a JSON merge patch (RFC 7396) to the config as a
	// new revision, admitted like a submission (o carries the same
	// attestation and origin headers).
	SetConfig(ctx context.Context, p Principal, name string, patch []byte, o api.SubmitOptions) (api.ServiceConfig, error)
	// ConfigHistory lists the revisions kept, oldest first.
	ConfigHistory(ctx context.Context, p Principal, name string) ([]api.ConfigRevision, error)
}

func (s *Server) configRoutes() {
	cb, ok := s.b.(ConfigBackend)
	if !ok {
		return
	}
	s.handle("GET /v1/services/{name}/config", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		rev := 0
		if v := r.URL.Query().Get("revision"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				s.fail(w, r, Errorf(ErrInvalid, "revision: must be a whole number ≥ 1, got %q", v))
				return
			}
			rev = n
		}
		sc, err := cb.ServiceConfig(r.Context(), p, r.PathValue("name"), rev)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, sc)
	})
	s.handle("PATCH /v1/services/{name}/config", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != api.MergePatchType && ct != "application/json" {
			s.fail(w, r, Errorf(errMediaType, "body must be a JSON merge patch (Content-Type %s), got %q", api.MergePatchType, r.Header.Get("Content-Type")))
			return
		}
		o, err := submitOptions(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxJSONBytes))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		sc, err := cb.SetConfig(r.Context(), p, r.PathValue("name"), body, o)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, sc)
	})
	s.handle("GET /v1/services/{name}/config/history", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		h, err := cb.ConfigHistory(r.Context(), p, r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeList(w, h)
	})
}
