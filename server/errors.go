package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/internal/disk"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/store"
)

// The answers to a connection over a limit (Config.MaxConns and
// MaxConnsPerIP), sent by the listener with Retry-After before any handler
// runs.
var (
	errBusy     = &api.Error{Status: http.StatusServiceUnavailable, Message: "the node has as many connections open as it allows; retry later", RetryAfter: 1}
	errBusyAddr = &api.Error{Status: http.StatusTooManyRequests, Message: "your address has as many connections open as the node allows; close one or retry later", RetryAfter: 1}
)

// toAPIError maps an error to its HTTP status. This is the one place where
// errors become status codes.
func toAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	// A read deadline met while reading the request body (ReadTimeout, or
	// a submission that fell behind UploadMinRate), whatever wraps it.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &api.Error{Status: http.StatusRequestTimeout, Message: "request body not received in time: " + err.Error()}
	}
	var me manifest.Errors
	if errors.As(err, &me) {
		e := &api.Error{Status: http.StatusBadRequest, Message: "invalid manifest"}
		for _, p := range me {
			e.Problems = append(e.Problems, p.Error())
		}
		return e
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &api.Error{Status: http.StatusRequestEntityTooLarge, Message: "request body larger than the " + disk.Size(mbe.Limit) + " allowed"}
	case errors.Is(err, archive.ErrTooLarge):
		return &api.Error{Status: http.StatusRequestEntityTooLarge, Message: err.Error()}
	case errors.Is(err, archive.ErrUnsafe), errors.Is(err, archive.ErrFormat):
		return &api.Error{Status: http.StatusBadRequest, Message: err.Error()}
	case errors.Is(err, manifest.ErrNoManifest), errors.Is(err, manifest.ErrManyManifests), errors.Is(err, manifest.ErrFormat):
		return &api.Error{Status: http.StatusBadRequest, Message: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return &api.Error{Status: http.StatusNotFound, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &api.Error{Status: http.StatusGatewayTimeout, Message: err.Error()}
	case errors.Is(err, context.Canceled):
		return &api.Error{Status: 499, Message: err.Error()}
	}
	return &api.Error{Status: http.StatusInternalServerError, Message: err.Error()}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	if e.Status >= 500 && s.log != nil {
		s.log.Error("request", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, e)
}

func writeError(w http.ResponseWriter, e *api.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Status, e)
}
