package server

import (
	"net/http"

	"github.com/andromeda-runner/andromeda/ui"
)

// uiRoutes serve the dashboard (package ui) at /ui/. Its pages carry no
// data: everything on them is read through the API with the token the
// user signs in with, so they need no authentication of their own.
func (s *Server) uiRoutes() {
	s.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	})
	s.mux.Handle("GET /ui/", ui.Handler("/ui/"))
}
