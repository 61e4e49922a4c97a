package server

import (
	"context"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/andromeda-runner/andromeda/api"
)

// FlowBackend keeps the flows applied to the node (the runner API's
// addOrUpdateFlow, listFlowsForRuntime and removeFlow). A Backend that
// implements it has POST /v1/flows[?dry_run=true] (a flow document in
// YAML, JSON or TOML, by its Content-Type), GET /v1/flows[?runtime=ID],
// GET and DELETE /v1/flows/{id}, for any token: a submitter applies flows
// of its own services and sees and removes its own flows.
type FlowBackend interface {
	// ApplyFlow checks and stores a flow document written in format
	// ("yaml", "json" or "toml"); dryRun writes nothing.
	ApplyFlow(ctx context.Context, p Principal, format string, doc []byte, dryRun bool) (api.FlowApplied, error)
	// Flows lists the flows p may see; runtime, when set, only those with
	// a module on that runtime.
	Flows(ctx context.Context, p Principal, runtime string) ([]api.Flow, error)
	Flow(ctx context.Context, p Principal, id string) (api.Flow, error)
	RemoveFlow(ctx context.Context, p Principal, id string) error
}

// flowFormats maps the media types of a flow document to its format.
var flowFormats = map[string]string{
	"application/yaml": "yaml", "application/x-yaml": "yaml", "text/yaml": "yaml",
	"application/json": "json",
	"application/toml": "toml",
}

func (s *Server) flowRoutes() {
	fb, ok := s.b.(FlowBackend)
	if !ok {
		return
	}
	anyRole := ""
	s.handle("POST /v1/flows", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		format, ok := flowFormats[ct]
		if !ok {
			s.fail(w, r, Errorf(errMediaType, "a flow document is YAML (application/yaml), JSON (application/json) or TOML (application/toml), got %q", r.Header.Get("Content-Type")))
			return
		}
		dry := false
		if v := r.URL.Query().Get("dry_run"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				s.fail(w, r, Errorf(ErrInvalid, "dry_run: must be true or false, got %q", v))
				return
			}
			dry = b
		}
		doc, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxJSONBytes))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		a, err := fb.ApplyFlow(r.Context(), p, format, doc, dry)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		status := http.StatusOK
		if a.Created && !a.DryRun {
			status = http.StatusCreated
		}
		writeJSON(w, status, a)
	})
	s.handle("GET /v1/flows", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		fs, err := fb.Flows(r.Context(), p, r.URL.Query().Get("runtime"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeList(w, fs)
	})
	s.handle("GET /v1/flows/{id}", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		f, err := fb.Flow(r.Context(), p, r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, f)
	})
	s.handle("DELETE /v1/flows/{id}", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		if err := fb.RemoveFlow(r.Context(), p, r.PathValue("id")); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
