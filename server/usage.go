package server

import (
	"context"
	"net/http"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// UsageBackend answers the usage of a service in a period: totals and the
// signed usage record of each run. A Backend that implements it has GET
// /v1/usage, for the service's owner and the operator. Safe for concurrent
// use.
type UsageBackend interface {
	Usage(ctx context.Context, p Principal, service string, since time.Time) (api.UsageReport, error)
}

// usageRoutes mounts GET /v1/usage?service=NAME&since=T when the backend
// answers it. since is a duration back from now or an RFC 3339 time, as
// for the why question; absent, the backend's default.
func (s *Server) usageRoutes() {
	ub, ok := s.b.(UsageBackend)
	if !ok {
		return
	}
	s.handle("GET /v1/usage", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		q := r.URL.Query()
		service := q.Get("service")
		if service == "" {
			s.fail(w, r, Errorf(ErrInvalid, "service: required, the name of a service"))
			return
		}
		since, err := whySince(q.Get("since"), time.Now())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		u, err := ub.Usage(r.Context(), p, service, since)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, u)
	})
}
