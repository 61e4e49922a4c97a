package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// FlowRunner runs the flows a FlowBackend keeps (the runner API's
// startFlow and stopFlow, and the flow's input). A Backend that implements
// it has POST /v1/flows/{id}/start, /stop and /fire and GET
// /v1/flows/{id}/runs, for any token: a submitter starts, stops, fires and
// reads its own flows; and PUT/DELETE /v1/flows/{id}/breakpoints/{module}
// and POST /v1/flows/{id}/step and /v1/flows/{id}/runs/{run}/rerun, the
// operator's.
type FlowRunner interface {
	StartFlow(ctx context.Context, p Principal, id string) (api.Flow, error)
	StopFlow(ctx context.Context, p Principal, id string) (api.Flow, error)
	// FireFlow stores the message in the flow's queue and, with wait > 0,
	// waits up to wait for its flow run to end; the run's outcome is
	// "queued" when it has not.
	FireFlow(ctx context.Context, p Principal, id string, message []byte, module string, wait time.Duration) (api.FlowRun, error)
	// FlowRuns lists the flow's last limit runs, newest first; with
	// dead, only its dead letters among its last maxFlowRuns runs.
	FlowRuns(ctx context.Context, p Principal, id string, limit int, dead bool) ([]api.FlowRun, error)
	// SetBreakpoint sets (on) or removes the breakpoint at module.
	SetBreakpoint(ctx context.Context, p Principal, id, module string, on bool) (api.Flow, error)
	// StepFlow advances each message held at a breakpoint one module.
	StepFlow(ctx context.Context, p Principal, id string) (api.FlowStepResult, error)
	// RerunFlow re-runs failed flow run run from module from (empty: the
	// one it failed at), waiting as FireFlow does.
	RerunFlow(ctx context.Context, p Principal, id, run, from string, wait time.Duration) (api.FlowRun, error)
}

// Bounds of the flow run routes.
const (
	maxFlowWait     = 5 * time.Minute
	defaultFlowRuns = 20
	maxFlowRuns     = 1000
)

func (s *Server) flowRunRoutes() {
	fr, ok := s.b.(FlowRunner)
	if !ok {
		return
	}
	anyRole := ""
	lifecycle := func(do func(context.Context, Principal, string) (api.Flow, error)) func(http.ResponseWriter, *http.Request, Principal) {
		return func(w http.ResponseWriter, r *http.Request, p Principal) {
			f, err := do(r.Context(), p, r.PathValue("id"))
			if err != nil {
				s.fail(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, f)
		}
	}
	s.handle("POST /v1/flows/{id}/start", anyRole, lifecycle(fr.StartFlow))
	s.handle("POST /v1/flows/{id}/stop", anyRole, lifecycle(fr.StopFlow))
	s.handle("POST /v1/flows/{id}/fire", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		var req api.FlowFireRequest
		if !s.decode(w, r, &req, true) {
			return
		}
		wait, ok := s.flowWait(w, r, req.Wait)
		if !ok {
			return
		}
		run, err := fr.FireFlow(r.Context(), p, r.PathValue("id"), req.Message, req.Module, wait)
		s.flowRunAnswer(w, r, run, err)
	})
	s.handle("POST /v1/flows/{id}/runs/{run}/rerun", api.RoleOperator, func(w http.ResponseWriter, r *http.Request, p Principal) {
		var req api.FlowRerunRequest
		if !s.decode(w, r, &req, true) {
			return
		}
		wait, ok := s.flowWait(w, r, req.Wait)
		if !ok {
			return
		}
		run, err := fr.RerunFlow(r.Context(), p, r.PathValue("id"), r.PathValue("run"), req.From, wait)
		s.flowRunAnswer(w, r, run, err)
	})
	breakpoint := func(on bool) func(http.ResponseWriter, *http.Request, Principal) {
		return func(w http.ResponseWriter, r *http.Request, p Principal) {
			f, err := fr.SetBreakpoint(r.Context(), p, r.PathValue("id"), r.PathValue("module"), on)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, f)
		}
	}
	s.handle("PUT /v1/flows/{id}/breakpoints/{module}", api.RoleOperator, breakpoint(true))
	s.handle("DELETE /v1/flows/{id}/breakpoints/{module}", api.RoleOperator, breakpoint(false))
	s.handle("POST /v1/flows/{id}/step", api.RoleOperator, func(w http.ResponseWriter, r *http.Request, p Principal) {
		res, err := fr.StepFlow(r.Context(), p, r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	s.handle("GET /v1/flows/{id}/runs", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		limit := defaultFlowRuns
		if v := r.URL.Query().Get("limit"); v != "" {
			l, err := strconv.Atoi(v)
			if err != nil || l < 1 || l > maxFlowRuns {
				s.fail(w, r, Errorf(ErrInvalid, "limit: must be an integer from 1 to %d, got %q", maxFlowRuns, v))
				return
			}
			limit = l
		}
		dead := false
		switch v := r.URL.Query().Get("dead_letter"); v {
		case "", "false":
		case "true":
			dead = true
		default:
			s.fail(w, r, Errorf(ErrInvalid, "dead_letter: must be true or false, got %q", v))
			return
		}
		runs, err := fr.FlowRuns(r.Context(), p, r.PathValue("id"), limit, dead)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeList(w, runs)
	})
}

// flowWait reads a fire's wait: empty is none, else a duration up to
// maxFlowWait; false when it answered 400.
func (s *Server) flowWait(w http.ResponseWriter, r *http.Request, v string) (time.Duration, bool) {
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > maxFlowWait {
		s.fail(w, r, Errorf(ErrInvalid, "wait: must be a duration from 0s to %v, got %q", maxFlowWait, v))
		return 0, false
	}
	return d, true
}

// flowRunAnswer answers with a fired flow run: 202 while it is queued,
// 200 once it ended.
func (s *Server) flowRunAnswer(w http.ResponseWriter, r *http.Request, run api.FlowRun, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if run.Outcome == "queued" {
		status = http.StatusAccepted
	}
	writeJSON(w, status, run)
}
