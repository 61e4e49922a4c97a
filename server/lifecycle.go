package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// LifecycleBackend drives a service through its phases (api.PhaseAdmitted
// … api.PhaseStopped) one step at a time. A Backend that implements it has
// POST /v1/services/{name}/deploy, /start and /stop, for the service's
// owner and the operator (another submitter's service is not found), and
// DELETE /v1/services/{name}?purge=true, for the operator. Safe for
// concurrent use; a step that does not apply to the service's phase is an
// ErrConflict naming the phase.
type LifecycleBackend interface {
	DeployService(ctx context.Context, p Principal, name string) (api.DeployResult, error)
	StartService(ctx context.Context, p Principal, name string) (api.Service, error)
	// StopService gives runs in flight grace (0: the backend's default)
	// before it kills them, and returns once they are recorded.
	StopService(ctx context.Context, p Principal, name string, grace time.Duration) (api.Service, error)
	// RemoveService stops and deletes a service; purge also deletes its
	// runs.
	RemoveService(ctx context.Context, name string, purge bool) error
}

// lifecycleRoutes mounts the lifecycle steps when the backend drives them.
func (s *Server) lifecycleRoutes() {
	lb, ok := s.b.(LifecycleBackend)
	if !ok {
		return
	}
	s.handle("POST /v1/services/{name}/deploy", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		if !s.decode(w, r, &struct{}{}, true) {
			return
		}
		res, err := lb.DeployService(r.Context(), p, r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	s.handle("POST /v1/services/{name}/start", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		if !s.decode(w, r, &struct{}{}, true) {
			return
		}
		svc, err := lb.StartService(r.Context(), p, r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, svc)
	})
	s.handle("POST /v1/services/{name}/stop", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		var req api.StopRequest
		if !s.decode(w, r, &req, true) {
			return
		}
		if q := r.URL.Query().Get("grace"); q != "" {
			req.Grace = q
		}
		var grace time.Duration
		if req.Grace != "" {
			g, err := time.ParseDuration(req.Grace)
			if err != nil || g <= 0 {
				s.fail(w, r, Errorf(ErrInvalid, "grace: must be a positive duration such as 5s, got %q", req.Grace))
				return
			}
			grace = g
		}
		svc, err := lb.StopService(r.Context(), p, r.PathValue("name"), grace)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, svc)
	})
}

// removeWith answers DELETE /v1/services/{name}[?purge=true] through the
// lifecycle backend; ok is false when the backend has none.
func (s *Server) removeWith(w http.ResponseWriter, r *http.Request) (ok bool) {
	lb, ok := s.b.(LifecycleBackend)
	if !ok {
		return false
	}
	purge := false
	if v := r.URL.Query().Get("purge"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.fail(w, r, Errorf(ErrInvalid, "purge: must be true or false, got %q", v))
			return true
		}
		purge = b
	}
	if err := lb.RemoveService(r.Context(), r.PathValue("name"), purge); err != nil {
		s.fail(w, r, err)
		return true
	}
	w.WriteHeader(http.StatusNoContent)
	return true
}

// noStart reads a submission's ?start=false (api.SubmitOptions.NoStart).
func noStart(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("start")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, Errorf(ErrInvalid, "start: must be true or false, got %q", v)
	}
	return !b, nil
}
