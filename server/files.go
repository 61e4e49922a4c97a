package server

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// FileBackend is the node's side of moving files in and out of a service's
// volumes (docs/design.md section 5, "Volumes"). A Backend that implements it has the
// /v1/services/{name}/volumes and /files routes, for any token: a
// submitter reaches only its own services' volumes (another's is not
// found). path is a guest path ("/out/a.txt") at or under one of the
// service's volume paths. Errors name a kind: ErrInvalid for a path outside
// every volume or one that leaves its volume (a '..', a symbolic link
// pointing out), ErrTooLarge for a file beyond the volume's free space,
// store.ErrNotFound for what does not exist. Safe for concurrent use.
type FileBackend interface {
	Volumes(ctx context.Context, p Principal, service string) ([]api.Volume, error)
	// OpenFile opens path: a file's info and contents (closed by the
	// caller), or a directory's listing with a nil body.
	OpenFile(ctx context.Context, p Principal, service, path string) (api.FileInfo, io.ReadCloser, *api.Listing, error)
	// WriteFile writes body to path, replacing a file there, within the
	// volume's free space.
	WriteFile(ctx context.Context, p Principal, service, path string, body io.Reader) (api.FileInfo, error)
	// RemoveFile removes path and, for a directory, what it holds.
	RemoveFile(ctx context.Context, p Principal, service, path string) error
}

// fileRoutes mounts the volume file API when the backend serves it.
func (s *Server) fileRoutes() {
	fb, ok := s.b.(FileBackend)
	if !ok {
		return
	}
	anyRole := ""
	guestPath := func(r *http.Request) string { return "/" + r.PathValue("path") }
	s.handle("GET /v1/services/{name}/volumes", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		list, err := fb.Volumes(r.Context(), p, r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeList(w, list)
	})
	s.handle("GET /v1/services/{name}/files/{path...}", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		info, body, list, err := fb.OpenFile(r.Context(), p, r.PathValue("name"), guestPath(r))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if list != nil {
			w.Header().Set(api.FileTypeHeader, "dir")
			writeJSON(w, http.StatusOK, list)
			return
		}
		defer body.Close()
		w.Header().Set(api.FileTypeHeader, "file")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
		w.Header().Set("Last-Modified", info.Modified.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		io.CopyN(w, body, info.Size)
	})
	s.handle("PUT /v1/services/{name}/files/{path...}", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		// A file may be large: its body keeps to the minimum-rate rule
		// rather than ReadTimeout, as a submission's does; the volume's
		// free space bounds its size.
		upload := &uploadBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(), grace: s.cfg.ReadTimeout, rate: s.cfg.UploadMinRate}
		info, err := fb.WriteFile(r.Context(), p, r.PathValue("name"), guestPath(r), upload)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, info)
	})
	s.handle("DELETE /v1/services/{name}/files/{path...}", anyRole, func(w http.ResponseWriter, r *http.Request, p Principal) {
		if err := fb.RemoveFile(r.Context(), p, r.PathValue("name"), guestPath(r)); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
