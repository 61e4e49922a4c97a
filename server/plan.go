package server

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/andromeda-runner/andromeda/api"
)

// PlanBackend is the node's side of reviewing what runs do: a planned
// fire runs a service and answers with what it would execute, executing
// nothing and writing nothing; RunByID finds a run from its id alone. A
// Backend that implements it has POST /v1/services/{name}/fire with
// "plan": true, and GET /v1/runs/{id}.
type PlanBackend interface {
	Plan(ctx context.Context, name string, message json.RawMessage) (api.Run, error)
	RunByID(ctx context.Context, p Principal, id string) (api.Run, error)
}

func (s *Server) planRoutes() {
	pb, ok := s.b.(PlanBackend)
	if !ok {
		return
	}
	s.planner = pb
	s.handle("GET /v1/runs/{id}", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		run, err := pb.RunByID(r.Context(), p, r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, run)
	})
}
