package server

import (
	"context"
	"net/http"

	"github.com/andromeda-runner/andromeda/api"
)

// OfferBackend is the node's side of its offer and self-tests. A Backend
// that implements it has GET /v1/offer and GET /v1/runtimes (any token), POST
// /v1/selftest[?name=N&name=M] (names: only those drivers and runtimes) and
// POST /v1/services/{name}/test (operator). Safe for concurrent use; its
// errors name a kind, never a status.
type OfferBackend interface {
	Offer(ctx context.Context) (api.Offer, error)
	Runtimes(ctx context.Context) ([]api.Runtime, error)
	SelfTest(ctx context.Context, names ...string) (api.SelfTest, error)
	TestService(ctx context.Context, name string) (api.ServiceTest, error)
}

// offerRoutes mounts the offer and self-test API when the backend serves it.
func (s *Server) offerRoutes() {
	ob, ok := s.b.(OfferBackend)
	if !ok {
		return
	}
	op, anyRole := api.RoleOperator, ""
	s.handle("GET /v1/offer", anyRole, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		o, err := ob.Offer(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, o)
	})
	s.handle("GET /v1/runtimes", anyRole, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		rs, err := ob.Runtimes(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeList(w, rs)
	})
	s.handle("POST /v1/selftest", op, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		st, err := ob.SelfTest(r.Context(), r.URL.Query()["name"]...)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	s.handle("POST /v1/services/{name}/test", op, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		t, err := ob.TestService(r.Context(), r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
}
