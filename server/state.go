package server

import (
	"context"
	"net/http"

	"github.com/andromeda-runner/andromeda/api"
)

// StateBackend reads a service's state: its values, its revision and the
// runs that wrote the newest revisions. A Backend that implements it has
// GET /v1/services/{name}/state, for the service's owner and the operator.
type StateBackend interface {
	State(ctx context.Context, p Principal, name string) (api.State, error)
}

func (s *Server) stateRoutes() {
	sb, ok := s.b.(StateBackend)
	if !ok {
		return
	}
	s.handle("GET /v1/services/{name}/state", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		st, err := sb.State(r.Context(), p, r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
}
