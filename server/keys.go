package server

import (
	"context"
	"net/http"

	"github.com/andromeda-runner/andromeda/api"
)

// KeyBackend is the node's side of key management: the ed25519 keys, one
// per submit target, that the node signs envelopes with. A Backend that
// implements it has the /v1/keys routes, all operator-only. Safe for
// concurrent use; its errors name a kind (ErrInvalid for a bad target
// name, ErrConflict for a key that exists, store.ErrNotFound for one that
// does not), never a status.
type KeyBackend interface {
	CreateKey(ctx context.Context, target string) (api.Key, error)
	Keys(ctx context.Context) ([]api.Key, error)
	Key(ctx context.Context, target string) (api.Key, error)
	RemoveKey(ctx context.Context, target string) error
}

// keyRoutes mounts the key management API when the backend serves it.
func (s *Server) keyRoutes() {
	kb, ok := s.b.(KeyBackend)
	if !ok {
		return
	}
	op := api.RoleOperator
	s.handle("POST /v1/keys/{target}", op, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		k, err := kb.CreateKey(r.Context(), r.PathValue("target"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, k)
	})
	s.handle("GET /v1/keys", op, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		list, err := kb.Keys(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeList(w, list)
	})
	s.handle("GET /v1/keys/{target}", op, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		k, err := kb.Key(r.Context(), r.PathValue("target"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, k)
	})
	s.handle("DELETE /v1/keys/{target}", op, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		if err := kb.RemoveKey(r.Context(), r.PathValue("target")); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
