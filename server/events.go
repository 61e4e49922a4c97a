package server

import (
	"io"
	"net/http"
)

// publish answers POST /v1/events/{topic}: the body is the event's JSON
// message. 202 with {topic, sequence} once the bus stored it; the Backend
// says whether the topic and payload are valid and whether p may publish
// there.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, p Principal) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxJSONBytes))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.b.Publish(r.Context(), p, r.PathValue("topic"), body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}
