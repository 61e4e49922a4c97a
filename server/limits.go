package server

// What keeps slow or numerous clients from holding the node's connections:
// the http.Server's timeouts, a listener that bounds open connections in
// total and per client address, and the per-request deadline rules that
// ServeHTTP applies (see statusWriter and uploadBody).

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// refusedDrain is how long the server goes on reading a request body it
	// answered without reading (401, 403, or any answer sent before the
	// body's end) before it closes the connection. A client that has nearly
	// finished sending then reads the answer instead of a reset; one
	// trickling its body is cut off.
	refusedDrain = 500 * time.Millisecond
	// refuseTimeout bounds how long a connection over a limit is kept: to
	// read its request head, send the 503 or 429 and see the client close.
	refuseTimeout = time.Second
	// maxRefusing bounds the refusals being answered at once; beyond it a
	// connection over a limit is closed without an answer.
	maxRefusing = 64
)

// HTTPServer returns the http.Server that serves s with the configured
// header, read, write and idle timeouts and header size limit. errorLog may
// be nil. Serve it on s.Listener(ln) and stop it with Shutdown.
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		// ReadTimeout is a deadline for the whole request; net/http lifts
		// it once the body has been read, and submissions replace it with
		// the minimum-rate rule (uploadBody).
		ReadTimeout: s.cfg.ReadTimeout,
		// WriteTimeout starts when the request's headers have been read;
		// ServeHTTP re-arms it at the response's first byte.
		WriteTimeout:   s.cfg.WriteTimeout,
		IdleTimeout:    s.cfg.IdleTimeout,
		MaxHeaderBytes: s.cfg.MaxHeaderBytes,
		ErrorLog:       errorLog,
	}
}

// Listener wraps ln so that at most MaxConns connections are open at once,
// at most MaxConnsPerIP of them from one client IP address. A connection over
// a limit never reaches the handlers: once its request head has arrived (or
// after a second) it is answered 429 (its address is over MaxConnsPerIP) or
// 503 (the node is over MaxConns), with Retry-After, and closed. Closing the
// returned listener closes ln. Safe for concurrent use.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &limitListener{
		Listener:    ln,
		max:         s.cfg.MaxConns,
		perAddr:     s.cfg.MaxConnsPerIP,
		headerBytes: s.cfg.MaxHeaderBytes,
		byAddr:      map[string]int{},
		refusing:    make(chan struct{}, maxRefusing),
		busy:        refusalResponse(errBusy),
		busyAddr:    refusalResponse(errBusyAddr),
	}
}

// limitListener counts open connections in total and per client address.
type limitListener struct {
	net.Listener
	max, perAddr   int
	headerBytes    int
	busy, busyAddr []byte // the whole HTTP answers to a refused connection

	mu     sync.Mutex
	open   int
	byAddr map[string]int

	refusing chan struct{} // a semaphore: refusals being answered
	refused  atomic.Int64  // connections refused so far
}

// Accept returns the next connection within the limits, answering and
// closing those over them on the way.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteIP(c)
		answer := l.admit(addr)
		if answer == nil {
			return &limitedConn{Conn: c, l: l, addr: addr}, nil
		}
		l.refused.Add(1)
		l.refuse(c, answer)
	}
}

// admit counts a new connection from addr in, or returns the answer that
// refuses it.
func (l *limitListener) admit(addr string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.byAddr[addr] >= l.perAddr:
		return l.busyAddr
	case l.open >= l.max:
		return l.busy
	}
	l.open++
	l.byAddr[addr]++
	return nil
}

func (l *limitListener) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
}

// counts returns the open connections, in total and from addr.
func (l *limitListener) counts(addr string) (total, fromAddr int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.byAddr[addr]
}

// refuse answers c with answer and closes it, in the background and within
// refuseTimeout; when maxRefusing refusals are already under way it closes
// c at once.
func (l *limitListener) refuse(c net.Conn, answer []byte) {
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(refuseTimeout))
		// Read the request head first: a client gets its answer to the
		// request it sent, not before it.
		br := bufio.NewReaderSize(io.LimitReader(c, int64(l.headerBytes)), 4096)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		// Wait for the client to close, so it reads the answer rather than
		// a reset.
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// remoteIP is the IP address c comes from (its whole remote address when it
// has no IP).
func remoteIP(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return ""
	default:
		if host, _, err := net.SplitHostPort(a.String()); err == nil {
			return host
		}
		return a.String()
	}
}

// limitedConn is an admitted connection; closing it releases its place.
type limitedConn struct {
	net.Conn
	l    *limitListener
	addr string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.addr) })
	return err
}

// CloseWrite half-closes a TCP connection: http.Server uses it to let a
// client read a last answer before the connection closes.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// statusWriter records the status for the access log and applies the
// per-response deadline rules:
//
//   - The write deadline is WriteTimeout from the response's first byte,
//     unless the handler set its own through http.ResponseController (a
//     streaming route clears it, or re-arms it for each event).
//   - An answer sent before the request body has been read to its end (every
//     401 and 403 among them, as authentication comes before any body is
//     read) closes the connection: Connection: close, and the server reads
//     what is left of the body for at most refusedDrain.
type statusWriter struct {
	http.ResponseWriter
	rc           *http.ResponseController // on the server's own writer
	writeTimeout time.Duration
	status       int
	wroteHeader  bool
	ownDeadline  bool        // the handler set its write deadline
	bodyDone     atomic.Bool // the request has no body, or it was read to EOF
	bodyFailed   atomic.Bool // reading the body failed (a read deadline, a reset)
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		w.status = code
		bodyLeft := !w.bodyDone.Load()
		if bodyLeft || code == http.StatusUnauthorized || code == http.StatusForbidden {
			w.Header().Set("Connection", "close")
		}
		if bodyLeft {
			drain := refusedDrain
			if w.bodyFailed.Load() {
				drain = 0 // the body already timed out or broke: nothing to wait for
			}
			w.rc.SetReadDeadline(time.Now().Add(drain))
		}
		if !w.ownDeadline && w.writeTimeout > 0 {
			w.rc.SetWriteDeadline(time.Now().Add(w.writeTimeout))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.rc.Flush()
}

// SetWriteDeadline is what http.ResponseController calls: the handler takes
// its write deadline over.
func (w *statusWriter) SetWriteDeadline(t time.Time) error {
	w.ownDeadline = true
	return w.rc.SetWriteDeadline(t)
}

// Unwrap gives http.ResponseController the server's writer for everything
// else.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// trackedBody tells w when the body has been read to its end, or reading
// it failed.
type trackedBody struct {
	io.ReadCloser
	w *statusWriter
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		// net/http lifts the read deadline now, for its own background
		// read that notices a client going away.
		b.w.bodyDone.Store(true)
	case err != nil:
		b.w.bodyFailed.Store(true)
	}
	return n, err
}

// uploadBody is a submission's body under the minimum-rate rule: before each
// read the read deadline is start + grace + (bytes read so far) / rate. A
// client keeping up rate on average never meets it, whatever the size; one
// that stalls is cut off after grace plus what it has earned. The archive
// size limit bounds the whole upload to grace + limit/rate.
type uploadBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	grace time.Duration
	rate  int64 // bytes per second
	n     int64
	ended bool // read to its end or failed: the deadline is net/http's again
}

func (b *uploadBody) Read(p []byte) (int, error) {
	if !b.ended {
		earned := time.Duration(float64(b.n) / float64(b.rate) * float64(time.Second))
		b.rc.SetReadDeadline(b.start.Add(b.grace + earned))
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil {
		b.ended = true
	}
	return n, err
}
