package server

import (
	"context"
	"io"
	"net/http"

	"github.com/andromeda-runner/andromeda/attest"
)

// TrustBackend is the node's side of the trust tree's revocations
// (/v1/trust/revocations). A verified revocation can only take trust away,
// so any authenticated principal may post one signed by a trusted hub of
// the policy in force; one signed by another key (a delegate revoking a
// sub-delegation) only the operator may post, so strangers' throwaway keys
// cannot fill the node's bounded store (ErrForbidden otherwise). Safe for
// concurrent use; its errors name a kind, never a status.
type TrustBackend interface {
	// Revoke stores a revocation whose signature verified; admission
	// honours it from then on. Of one key's revocations of one delegation
	// the earliest revoked_at is kept: a revocation dated the same or
	// later (a replay of a scheduled one) changes nothing, and Revoke
	// returns the one held with stored false. Storing the same again is
	// no error.
	Revoke(ctx context.Context, p Principal, r attest.Revocation) (held attest.Revocation, stored bool, err error)
	// Revocations lists the revocations the node holds.
	Revocations(ctx context.Context, p Principal) ([]attest.Revocation, error)
}

// trustRoutes mounts the revocations API. POST answers 201 with the
// revocation when it is stored, 200 with the revocation the node already
// holds (the same or an earlier one of that delegation by that key) when
// nothing changed, 403 when a non-operator posts a revocation by a key
// that is not a trusted hub, 503 when the store is full. A backend that
// keeps no revocations answers 409.
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
		held, stored, err := tb.Revoke(r.Context(), p, rev)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !stored {
			writeJSON(w, http.StatusOK, held) // unchanged: the one held stays
			return
		}
		writeJSON(w, http.StatusCreated, held)
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
