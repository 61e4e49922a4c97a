package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/andromeda-runner/andromeda/api"
)

// ClusterBackend is the node's side of the node registry. A Backend that
// implements it has GET /v1/nodes (any token), GET /v1/cluster and POST
// /v1/node/drain (operator). Safe for concurrent use.
type ClusterBackend interface {
	Nodes(ctx context.Context) ([]api.ClusterNode, error)
	// Drain starts handing the node's services over to the other nodes
	// and answers the node's entry as it is now (ErrConflict alone).
	Drain(ctx context.Context) (api.ClusterNode, error)
	// ClusterStatus is the registry and the store's streams with their
	// replicas.
	ClusterStatus(ctx context.Context) (api.ClusterStatus, error)
}

// ForwardsBackend is the node's record of the services it forwarded to
// its peers. A Backend that implements it has GET /v1/forwards
// (operator). Safe for concurrent use.
type ForwardsBackend interface {
	Forwards(ctx context.Context, limit int) ([]api.Forward, error)
}

// clusterRoutes mounts the cluster API when the backend serves it.
func (s *Server) clusterRoutes() {
	if fb, ok := s.b.(ForwardsBackend); ok {
		s.handle("GET /v1/forwards", api.RoleOperator, func(w http.ResponseWriter, r *http.Request, _ Principal) {
			limit := 100
			if v := r.URL.Query().Get("limit"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 1000 {
					s.fail(w, r, Errorf(ErrInvalid, "limit: must be a whole number from 1 to 1000"))
					return
				}
				limit = n
			}
			fs, err := fb.Forwards(r.Context(), limit)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			writeList(w, fs)
		})
	}
	cb, ok := s.b.(ClusterBackend)
	if !ok {
		return
	}
	s.handle("GET /v1/nodes", "", func(w http.ResponseWriter, r *http.Request, _ Principal) {
		nodes, err := cb.Nodes(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeList(w, nodes)
	})
	s.handle("GET /v1/cluster", api.RoleOperator, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		st, err := cb.ClusterStatus(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	s.handle("POST /v1/node/drain", api.RoleOperator, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		n, err := cb.Drain(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, n)
	})
}
