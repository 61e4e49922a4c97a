package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// WatchBackend streams what happens on the node and what services log. A
// Backend that implements it has GET /v1/watch and
// GET /v1/services/{name}/logs, both Server-Sent Events. Each method
// returns a channel of events in the order stored, each with its id, that
// closes when ctx ends or the stream cannot be read; a submitter gets only
// its own services'. Safe for concurrent use; errors name a kind
// (ErrInvalid, store.ErrNotFound), never a status.
type WatchBackend interface {
	Watch(ctx context.Context, p Principal, q api.WatchQuery) (<-chan api.WatchEvent, error)
	Logs(ctx context.Context, p Principal, service string, q api.LogQuery) (<-chan api.WatchEvent, error)
}

// WatchHeartbeat is how often an idle event stream sends a comment line,
// so that proxies and clients keep it open.
var WatchHeartbeat = 15 * time.Second

func (s *Server) watchRoutes() {
	wb, ok := s.b.(WatchBackend)
	if !ok {
		return
	}
	s.handle("GET /v1/watch", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		after, err := lastEventID(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ch, err := wb.Watch(r.Context(), p, api.WatchQuery{Service: r.URL.Query().Get("service"), After: after})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.streamEvents(w, r, ch)
	})
	s.handle("GET /v1/services/{name}/logs", "", func(w http.ResponseWriter, r *http.Request, p Principal) {
		after, err := lastEventID(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		q := api.LogQuery{Run: r.URL.Query().Get("run"), After: after}
		switch f := r.URL.Query().Get("follow"); f {
		case "", "0", "false":
		case "1", "true":
			q.Follow = true
		default:
			s.fail(w, r, Errorf(ErrInvalid, "follow: must be 1 or 0, got %q", f))
			return
		}
		ch, err := wb.Logs(r.Context(), p, r.PathValue("name"), q)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.streamEvents(w, r, ch)
	})
}

// lastEventID is where a stream resumes: the Last-Event-ID header an
// EventSource sends when it reconnects, else the since query parameter;
// 0 when neither is there.
func lastEventID(r *http.Request) (uint64, error) {
	name, v := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if v == "" {
		name, v = "since", r.URL.Query().Get("since")
	}
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, Errorf(ErrInvalid, "%s: must be an event id (a decimal number), got %q", name, v)
	}
	return id, nil
}

// streamEvents writes ch as Server-Sent Events (id: the event's id,
// event: its kind, data: its JSON) with a comment every WatchHeartbeat
// while idle. The route's write deadline is lifted: each write gets
// WriteTimeout of its own, so a client that stops reading is cut off and
// one that reads is served as long as it likes.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, ch <-chan api.WatchEvent) {
	rc := http.NewResponseController(w)
	deadline := func() { rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)) }
	deadline()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, ": andromeda\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(WatchHeartbeat)
	defer beat.Stop()
	var buf []byte
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			buf = appendEvent(buf[:0], ev)
			// Write what else is waiting in the same flush.
			for more := true; more && len(buf) < 64<<10; {
				select {
				case ev, ok = <-ch:
					if !ok {
						more = false
						break
					}
					buf = appendEvent(buf, ev)
				default:
					more = false
				}
			}
			deadline()
			if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
				return
			}
			if !ok {
				return
			}
		case <-beat.C:
			deadline()
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// appendEvent appends ev as one Server-Sent Event. Its JSON has no
// newline, so it is one data line.
func appendEvent(buf []byte, ev api.WatchEvent) []byte {
	data, err := json.Marshal(ev)
	if err != nil {
		return buf
	}
	buf = append(buf, "id: "...)
	buf = strconv.AppendUint(buf, ev.ID, 10)
	buf = append(buf, "\nevent: "...)
	buf = append(buf, ev.Kind...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	return append(buf, "\n\n"...)
}
