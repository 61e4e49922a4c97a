package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/internal/disk"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/store"
)

// The kinds of error a Backend returns besides those of the packages it
// uses (store.ErrNotFound for a service, run or token the caller may not
// see; manifest and archive errors for a bad submission). A Backend names a
// kind, never an HTTP status: statusOf below is the one place where errors
// become status codes. Match them with errors.Is.
//
// They are declared here, beside Backend, rather than in the node that
// returns them: the node imports this package, so this package cannot
// import the node.
var (
	// ErrInvalid: the request itself is wrong: a field out of range, a
	// message that is not JSON, an empty body, a service on a driver the
	// operation does not apply to.
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden: the caller may not do this, e.g. replace a service
	// another submitter owns.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict: the request clashes with what is registered or with
	// what the node has now: a version already registered with other
	// content, a service registered but not deployed or without a manual
	// trigger, a driver this node does not have.
	ErrConflict = errors.New("conflict")
	// ErrRefused: admission's decision is not to run the service here; the
	// Error carries the Decision and its failed reasons as Problems.
	ErrRefused = errors.New("refused by admission")
	// ErrUnusable: the request is well formed but what it names did not
	// work: a source that could not be fetched, an archive holding another
	// service, a service that did not deploy, a package that did not
	// install.
	ErrUnusable = errors.New("unusable")
	// ErrBusy: a run was skipped over its service's concurrency bound (the
	// Error carries the skipped run), or a client has as many connections
	// open as it may. Retrying after RetryAfter may succeed.
	ErrBusy = errors.New("busy")
	// ErrUnavailable: the node cannot take the work now: the data disk is
	// nearly full, the store cannot write, it did not record a run that
	// ended (the Error carries the run), or it is at capacity for new
	// services and the submission's time in the admission queue ran out
	// (or the queue was full). Retrying after RetryAfter may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrTooLarge: what the request carries is larger than the room it
	// goes into: a file beyond its volume's free space.
	ErrTooLarge = errors.New("too large")

	// The server's own kinds, for what it answers before a Backend is
	// asked.
	errUnauthenticated = errors.New("unauthenticated")
	errNoRoute         = errors.New("no such endpoint")
	errMediaType       = errors.New("unsupported media type")
)

// Error is an error of one of the kinds above with what goes with it. Its
// text is Msg; errors.Is(err, e.Kind) holds.
type Error struct {
	Kind error // one of the Err values above
	Msg  string
	// Problems has one line per field problem (ErrInvalid), or per failed
	// admission rule (ErrRefused).
	Problems []string
	// Decision is admission's decision (ErrRefused).
	Decision *api.Decision
	// Receipt is that decision signed by the node (ErrRefused, where the
	// node signs it: a submission's).
	Receipt *attest.Receipt
	// Run is the run the error is about: one skipped over the concurrency
	// bound (ErrBusy), or one that ended but was not recorded
	// (ErrUnavailable).
	Run *api.Run
	// RetryAfter, when positive, is how long the caller should wait before
	// trying again; it is sent as Retry-After in whole seconds, rounded up.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Kind }

// Errorf returns an Error of kind whose text is the formatted message.
func Errorf(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// statusOf maps a kind to its HTTP status; 0 for an error of none of the
// kinds.
func statusOf(err error) int {
	for _, k := range []struct {
		kind   error
		status int
	}{
		{ErrInvalid, http.StatusBadRequest},
		{errUnauthenticated, http.StatusUnauthorized},
		{ErrForbidden, http.StatusForbidden},
		{errNoRoute, http.StatusNotFound},
		{errMethod, http.StatusMethodNotAllowed},
		{ErrConflict, http.StatusConflict},
		{errMediaType, http.StatusUnsupportedMediaType},
		{ErrTooLarge, http.StatusRequestEntityTooLarge},
		{ErrRefused, http.StatusUnprocessableEntity},
		{ErrUnusable, http.StatusUnprocessableEntity},
		{ErrBusy, http.StatusTooManyRequests},
		{ErrUnavailable, http.StatusServiceUnavailable},
		{errHookFail, http.StatusBadGateway},
	} {
		if errors.Is(err, k.kind) {
			return k.status
		}
	}
	return 0
}

// The answers to a connection over a limit (Config.MaxConns and
// MaxConnsPerIP), sent by the listener with Retry-After before any handler
// runs.
var (
	errBusy     = &Error{Kind: ErrUnavailable, Msg: "the node has as many connections open as it allows; retry later", RetryAfter: time.Second}
	errBusyAddr = &Error{Kind: ErrBusy, Msg: "your address has as many connections open as the node allows; close one or retry later", RetryAfter: time.Second}
)

// toAPIError maps an error to the problem details answered for it. This is
// the one place where errors become status codes.
func toAPIError(err error) *api.Error {
	if status := statusOf(err); status != 0 {
		p := problem(status, err.Error())
		var e *Error
		if errors.As(err, &e) {
			p.Problems, p.Decision, p.Receipt, p.Run = e.Problems, e.Decision, e.Receipt, e.Run
			p.RetryAfter = int((e.RetryAfter + time.Second - 1) / time.Second)
		}
		return p
	}
	// A read deadline met while reading the request body (ReadTimeout, or
	// a submission that fell behind UploadMinRate), whatever wraps it.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return problem(http.StatusRequestTimeout, "request body not received in time: "+err.Error())
	}
	var me manifest.Errors
	if errors.As(err, &me) {
		p := problem(http.StatusBadRequest, "invalid manifest")
		for _, mp := range me {
			p.Problems = append(p.Problems, mp.Error())
		}
		return p
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return problem(http.StatusRequestEntityTooLarge, "request body larger than the "+disk.Size(mbe.Limit)+" allowed")
	case errors.Is(err, archive.ErrTooLarge):
		return problem(http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, archive.ErrUnsafe), errors.Is(err, archive.ErrFormat):
		return problem(http.StatusBadRequest, err.Error())
	case errors.Is(err, manifest.ErrNoManifest), errors.Is(err, manifest.ErrManyManifests), errors.Is(err, manifest.ErrFormat):
		return problem(http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return problem(http.StatusNotFound, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return problem(http.StatusGatewayTimeout, err.Error())
	case errors.Is(err, context.Canceled):
		return problem(statusClientClosed, err.Error())
	}
	return problem(http.StatusInternalServerError, err.Error())
}

// statusClientClosed is nginx's 499: the client hung up before the answer.
const statusClientClosed = 499

// problem is an RFC 9457 problem details object without a type of its own:
// the status says what kind of problem it is, the title is the status's
// text, the detail is the error's text.
func problem(status int, detail string) *api.Error {
	title := http.StatusText(status)
	if status == statusClientClosed {
		title = "Client Closed Request"
	}
	return &api.Error{Type: "about:blank", Title: title, Status: status, Message: detail}
}

// problemType is the media type of every error body.
const problemType = "application/problem+json"

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	if e.Status >= 500 && s.log != nil {
		s.log.Error("request", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.Header().Set("Content-Type", problemType)
	w.WriteHeader(e.Status)
	w.Write(problemBody(e))
}

func problemBody(e *api.Error) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.Encode(e)
	return b.Bytes()
}

// refusalResponse is the whole HTTP/1.1 answer carrying err, as fail would
// send it, for the listener to write to a connection over a limit.
func refusalResponse(err error) []byte {
	e := toAPIError(err)
	body := problemBody(e)
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nRetry-After: %d\r\nConnection: close\r\n\r\n%s",
		e.Status, http.StatusText(e.Status), problemType, len(body), e.RetryAfter, body)
}
