package server

import "net/http"

// BrowserBackend is a Backend that serves the browser runtime: its page,
// module worker and WebSocket under /runtime/browser (runtimes/browser).
type BrowserBackend interface {
	// BrowserRuntime is the handler of /runtime/browser and below; nil
	// when the node serves no browser runtime.
	BrowserRuntime() http.Handler
}

// browserRoutes mounts the browser runtime when the backend serves one.
// The page authenticates on its WebSocket with a token of the runtime
// role, not with a header, so the routes take no bearer token here. The
// WebSocket outlives the per-request deadlines: net/http clears a
// connection's deadlines when it is hijacked.
func (s *Server) browserRoutes() {
	bb, ok := s.b.(BrowserBackend)
	if !ok {
		return
	}
	if h := bb.BrowserRuntime(); h != nil {
		s.mux.Handle("GET /runtime/browser", h)
		s.mux.Handle("GET /runtime/browser/", h)
	}
}
