package server

import (
	"context"
	"io"
	"net/http"

	"github.com/andromeda-runner/andromeda/attest"
)

// TrustBackend is the node's side of the trust tree's revocations
// (/v1/trust/revocations). A verified revocation can only take trust away,
// so any authenticated principal may post one. Safe for concurrent use; its
// errors name a kind, never a status.
type TrustBackend interface {
	// Revoke stores a revocation whose signature verified; admission
	// honours it from then on. Storing the same again is no error.
	Revoke(ctx context.Context, p Principal, r attest.Revocation) error
	// Revocations lists the revocations the node holds.
	Revocations(ctx context.Context, p Principal) ([]attest.Revocation, error)
}

// trustRoutes mounts the revocations API. A backend that keeps no
// revocations answers 409.
func (s *Server) trustRoutes() {
	tb, _ := s.b.(TrustBackend)
	none := Errorf(ErrConflict, "this node keeps no revocations")
	s.handle("POST /v1/trust/revocations", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, attest.MaxRevocationSize))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		rev, err := attest.DecodeRevocation(body)
		if err != nil {
			s.fail(w, r, Errorf(ErrInvalid, "revocation: %v", err))
			return
		}
		if tb == nil {
			s.fail(w, r, none)
			return
		}
		if err := tb.Revoke(r.Context(), p, rev); err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, rev)
	})
	s.handle("GET /v1/trust/revocations", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		if tb == nil {
			s.fail(w, r, none)
			return
		}
		list, err := tb.Revocations(r.Context(), p)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeList(w, list)
	})
}
