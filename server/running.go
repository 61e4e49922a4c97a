package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// RunBackend is the node's side of the runs in flight (the seed's
// run_command and kill_command): a fire with an argument vector, a fire
// that answers once the run has started, the listing of runs in flight,
// waiting on one, and killing one. A Backend that implements it has
// "args" and "detach" on POST /v1/services/{name}/fire, status=running
// on GET /v1/runs, GET /v1/runs/{id}/wait and POST /v1/runs/{id}/cancel.
// Safe for concurrent use; errors name a kind, never a status.
type RunBackend interface {
	FireRun(ctx context.Context, name string, message json.RawMessage, args []string) (api.Run, error)
	FireDetached(ctx context.Context, name string, message json.RawMessage, args []string) (started api.RunInFlight, finished *api.Run, err error)
	Running(ctx context.Context, p Principal, service string) ([]api.RunInFlight, error)
	WaitRun(ctx context.Context, p Principal, id string, timeout time.Duration) (run api.Run, inFlight api.RunInFlight, done bool, err error)
	Cancel(ctx context.Context, p Principal, id string) (api.CancelResult, error)
}

// defaultWait is how long GET /v1/runs/{id}/wait waits without a timeout.
const defaultWait = 20 * time.Second

func (s *Server) runRoutes() {
	rb, ok := s.b.(RunBackend)
	if !ok {
		return
	}
	s.runner = rb
	s.handle("POST /v1/runs/{id}/cancel", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		var none struct{}
		if !s.decode(w, r, &none, true) {
			return
		}
		res, err := rb.Cancel(r.Context(), p, r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		status := http.StatusOK
		if res.Recorded == nil {
			status = http.StatusAccepted
		}
		writeJSON(w, status, res)
	})
	s.handle("GET /v1/runs/{id}/wait", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		timeout := defaultWait
		if v := r.URL.Query().Get("timeout"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Minute {
				s.fail(w, r, Errorf(ErrInvalid, "timeout: must be a duration from 0s to 1m, e.g. 20s"))
				return
			}
			timeout = d
		}
		run, inFlight, done, err := rb.WaitRun(r.Context(), p, r.PathValue("id"), timeout)
		switch {
		case err != nil:
			s.fail(w, r, err)
		case done:
			writeJSON(w, http.StatusOK, api.WaitResult{Run: &run})
		default:
			writeJSON(w, http.StatusAccepted, api.WaitResult{InFlight: &inFlight})
		}
	})
}

// fireRun serves a fire with args or detach; it reports false, having
// answered nothing, for a plain fire.
func (s *Server) fireRun(w http.ResponseWriter, r *http.Request, req api.FireRequest) bool {
	if len(req.Args) == 0 && !req.Detach {
		return false
	}
	switch {
	case s.runner == nil:
		s.fail(w, r, Errorf(ErrInvalid, "args, detach: this node runs no runs with args or detached"))
	case req.Plan && req.Detach:
		s.fail(w, r, Errorf(ErrInvalid, "detach: a planned fire records no run to detach from; give plan or detach"))
	case req.Plan:
		s.fail(w, r, Errorf(ErrInvalid, "args: a planned fire takes its message only"))
	case req.Detach:
		started, finished, err := s.runner.FireDetached(r.Context(), r.PathValue("name"), req.Message, req.Args)
		switch {
		case err != nil:
			s.fail(w, r, err)
		case finished != nil:
			writeJSON(w, http.StatusOK, finished)
		default:
			writeJSON(w, http.StatusAccepted, started)
		}
	default:
		run, err := s.runner.FireRun(r.Context(), r.PathValue("name"), req.Message, req.Args)
		if err != nil {
			s.fail(w, r, err)
			return true
		}
		writeJSON(w, http.StatusOK, run)
	}
	return true
}

// running answers GET /v1/runs?status=running[&service=NAME]; it reports
// false, having answered nothing, for a listing of recorded runs.
func (s *Server) running(w http.ResponseWriter, r *http.Request, p Principal) bool {
	q := r.URL.Query()
	if !q.Has("status") {
		return false
	}
	if st := q.Get("status"); st != api.RunRunning || s.runner == nil {
		s.fail(w, r, Errorf(ErrInvalid, "status: must be running (or absent, for the recorded runs)"))
		return true
	}
	for _, k := range []string{"limit", "cursor", "since", "until"} {
		if q.Has(k) {
			s.fail(w, r, Errorf(ErrInvalid, "%s: not with status=running (every run in flight is listed)", k))
			return true
		}
	}
	service := r.PathValue("name")
	if service == "" {
		service = q.Get("service")
	}
	runs, err := s.runner.Running(r.Context(), p, service)
	if err != nil {
		s.fail(w, r, err)
		return true
	}
	if runs == nil {
		runs = []api.RunInFlight{}
	}
	writeJSON(w, http.StatusOK, api.RunningList{Runs: runs})
	return true
}
