package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// slack is what a timeout may be overshot by on a busy machine (2 shared
// cores, -race) before a test calls it a failure.
const slack = 2 * time.Second

// serve runs s for b on 127.0.0.1 with its timeouts and limits and returns
// its address and its listener.
func serve(t *testing.T, b Backend, cfg Config) (string, *limitListener) {
	t.Helper()
	return serveServer(t, New(b, cfg, nil))
}

func serveServer(t *testing.T, s *Server) (string, *limitListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := s.HTTPServer(log.New(io.Discard, "", 0))
	ll := s.Listener(ln).(*limitListener)
	go hs.Serve(ll)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), ll
}

// bigMetrics is a backend whose /metrics answer is endless (up to 1 GiB),
// for clients that do not read; it reports how long each answer was written
// for before a write failed.
type bigMetrics struct {
	fakeBackend
	writeFailed chan time.Duration
}

func (b *bigMetrics) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		var start time.Time
		for i := 0; i < 1<<14; i++ {
			if _, err := w.Write(chunk); err != nil {
				b.writeFailed <- time.Since(start)
				return
			}
			if i == 0 {
				start = time.Now()
			}
		}
	})
}

// slowResult is what one slow client saw: how long after its last move the
// server closed the connection, and the answer's status line, if any.
type slowResult struct {
	kind   string
	closed time.Duration
	status string
	err    error
}

// slowClient dials addr, runs act (which returns the moment from which the
// server's timeout runs) and waits for the server to close the connection.
func slowClient(addr, kind string, act func(c net.Conn) (from time.Time, err error)) slowResult {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return slowResult{kind: kind, err: err}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // the test's own bound
	from, err := act(c)
	if err != nil {
		return slowResult{kind: kind, err: err}
	}
	var got bytes.Buffer
	_, err = io.Copy(&got, c) // until the server closes (EOF or reset)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return slowResult{kind: kind, err: fmt.Errorf("still open after 10s")}
	}
	status, _, _ := strings.Cut(got.String(), "\r\n")
	if !strings.HasPrefix(status, "HTTP/") {
		status = ""
	}
	return slowResult{kind: kind, closed: time.Since(from), status: status}
}

// trickle sends head, then one byte of body every interval until the
// connection fails.
func trickle(head string, interval time.Duration) func(c net.Conn) (time.Time, error) {
	return func(c net.Conn) (time.Time, error) {
		if _, err := io.WriteString(c, head); err != nil {
			return time.Time{}, err
		}
		from := time.Now()
		go func() {
			for {
				time.Sleep(interval)
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
		return from, nil
	}
}

// TestSlowClients opens many slow connections of every kind against a real
// server with short timeouts, and checks that each is closed within its
// timeout while healthy clients, and a slow but steady upload, are served.
func TestSlowClients(t *testing.T) {
	cfg := Config{
		ReadHeaderTimeout: 400 * time.Millisecond,
		ReadTimeout:       800 * time.Millisecond,
		WriteTimeout:      400 * time.Millisecond,
		IdleTimeout:       400 * time.Millisecond,
		UploadMinRate:     32 << 10,
		MaxArchiveBytes:   1 << 20,
		MaxConns:          2000,
		MaxConnsPerIP:     2000, // every client here is 127.0.0.1
	}
	b := &bigMetrics{writeFailed: make(chan time.Duration, 8)}
	addr, ll := serve(t, b, cfg)
	const perKind = 50
	const body = "Content-Length: 200000\r\n\r\n"

	kinds := []struct {
		name  string
		bound time.Duration // the configured timeout that must close it
		act   func(c net.Conn) (time.Time, error)
		want  string // status line prefix the client must have read first, if any
	}{
		{"silent", cfg.ReadHeaderTimeout, func(c net.Conn) (time.Time, error) { return time.Now(), nil }, ""},
		{"header trickle", cfg.ReadHeaderTimeout, func(c net.Conn) (time.Time, error) {
			return trickle("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ", 50*time.Millisecond)(c)
		}, ""},
		{"idle keep-alive", cfg.IdleTimeout, func(c net.Conn) (time.Time, error) {
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
				return time.Time{}, err
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return time.Time{}, err
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 200 || resp.Close {
				return time.Time{}, fmt.Errorf("GET /healthz = %s, close %v; want 200, keep-alive", resp.Status, resp.Close)
			}
			return time.Now(), nil
		}, ""},
		{"unauthenticated body trickle", refusedDrain, trickle("POST /v1/services HTTP/1.1\r\nHost: a\r\nContent-Type: application/gzip\r\n"+body, 50*time.Millisecond), "HTTP/1.1 401"},
		{"authenticated JSON body trickle", cfg.ReadTimeout, trickle("POST /v1/services/x/fire HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer op\r\n"+body, 50*time.Millisecond), ""},
		{"authenticated upload trickle", cfg.ReadTimeout, trickle("POST /v1/services HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sub\r\nContent-Type: application/gzip\r\n"+body, 50*time.Millisecond), ""},
	}

	// Healthy clients, all along.
	ctx, stop := context.WithCancel(context.Background())
	type served struct {
		took time.Duration
		open int // connections open when it was answered
	}
	var healthy struct {
		sync.Mutex
		served   []served
		failures []string
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A new connection for every request: each is admitted
			// among the slow ones, and none can meet the idle timeout.
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for j := 0; ctx.Err() == nil; j++ {
				method, path, payload := "GET", "/v1/services", ""
				if j%2 == 1 {
					method, path, payload = "POST", "/v1/services/x/deps", `{"package":"left-pad"}`
				}
				req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(payload))
				req.Header.Set("Authorization", "Bearer op")
				start := time.Now()
				resp, err := client.Do(req)
				healthy.Lock()
				if err != nil {
					healthy.failures = append(healthy.failures, err.Error())
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						healthy.failures = append(healthy.failures, method+" "+path+": "+resp.Status)
					} else {
						open, _ := ll.counts("127.0.0.1")
						healthy.served = append(healthy.served, served{time.Since(start), open})
					}
				}
				healthy.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	// A slow but steady upload: 64 KiB at 48 KiB/s takes longer than
	// ReadTimeout, and keeps above UploadMinRate.
	uploadDone := make(chan error, 1)
	go func() {
		pr, pw := io.Pipe()
		go func() {
			chunk := bytes.Repeat([]byte("a"), 4<<10)
			for i := 0; i < 16; i++ {
				time.Sleep(time.Second * 4 / 48)
				pw.Write(chunk)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/services", pr)
		req.ContentLength = 64 << 10
		req.Header.Set("Authorization", "Bearer sub")
		req.Header.Set("Content-Type", "application/gzip")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				err = fmt.Errorf("status %s", resp.Status)
			} else if took := time.Since(start); took < cfg.ReadTimeout {
				err = fmt.Errorf("took %v, not longer than the read timeout: the test proves nothing", took)
			}
		}
		uploadDone <- err
	}()

	// The slow clients.
	began := time.Now()
	results := make(chan slowResult, perKind*len(kinds))
	var slowWG sync.WaitGroup
	for _, k := range kinds {
		for i := 0; i < perKind; i++ {
			slowWG.Add(1)
			go func() {
				defer slowWG.Done()
				results <- slowClient(addr, k.name, k.act)
			}()
		}
	}
	// Two clients that never read a large answer.
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
	}
	slowWG.Wait()
	close(results)
	slowTook := time.Since(began)

	byKind := map[string][]time.Duration{}
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.kind, r.err)
			continue
		}
		byKind[r.kind] = append(byKind[r.kind], r.closed)
		for _, k := range kinds {
			if k.name == r.kind && k.want != "" && !strings.HasPrefix(r.status, k.want) {
				t.Errorf("%s: answer %q, want %s", r.kind, r.status, k.want)
			}
		}
	}
	for _, k := range kinds {
		closed := byKind[k.name]
		if len(closed) != perKind {
			t.Errorf("%s: %d of %d connections closed", k.name, len(closed), perKind)
			continue
		}
		worst := slices.Max(closed)
		t.Logf("%-32s %d closed, slowest %v after its last move (timeout %v)", k.name, len(closed), worst.Round(time.Millisecond), k.bound)
		if worst > k.bound+slack {
			t.Errorf("%s: closed %v after its last move, want within %v + %v", k.name, worst, k.bound, slack)
		}
	}
	for i := 0; i < 2; i++ {
		select {
		case d := <-b.writeFailed:
			t.Logf("%-32s write failed %v after its first byte (timeout %v)", "reader that never reads", d.Round(time.Millisecond), cfg.WriteTimeout)
			if d > cfg.WriteTimeout+slack {
				t.Errorf("a client that does not read held a response for %v, want within %v + %v", d, cfg.WriteTimeout, slack)
			}
		case <-time.After(cfg.WriteTimeout + 5*time.Second):
			t.Errorf("a client that does not read still holds its response")
		}
	}
	if err := <-uploadDone; err != nil {
		t.Errorf("slow but steady upload: %v", err)
	}
	stop()
	wg.Wait()

	if len(healthy.failures) > 0 {
		t.Errorf("%d healthy requests failed, first: %s", len(healthy.failures), healthy.failures[0])
	}
	var lat []time.Duration
	held, busy := 0, perKind*len(kinds)/2 // served while at least busy connections were open
	for _, h := range healthy.served {
		lat = append(lat, h.took)
		if h.open >= busy {
			held++
		}
	}
	if len(lat) == 0 {
		t.Fatalf("no healthy request served in %v", slowTook)
	}
	slices.Sort(lat)
	p50, p99, worst := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	t.Logf("healthy: %d requests served in %v, %d of them while %d or more connections were open; latency p50 %v, p99 %v, max %v",
		len(lat), slowTook.Round(time.Millisecond), held, busy, p50, p99, worst)
	if held == 0 {
		t.Errorf("no healthy request was served while %d or more connections were open", busy)
	}
	if p50 > 250*time.Millisecond || worst > slack {
		t.Errorf("healthy latency p50 %v, max %v; want under 250ms and %v", p50, worst, slack)
	}
	// Every slow connection's place is given back.
	waitFor(t, func() bool { total, _ := ll.counts("127.0.0.1"); return total == 0 }, "every connection to be released")
}

// waitFor polls cond until it holds, for at most 5 seconds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
	}
}

// openIdle opens a connection from local (nil: any), has one request
// answered on it and leaves it open.
func openIdle(t *testing.T, addr string, local net.Addr) net.Conn {
	t.Helper()
	c, err := (&net.Dialer{LocalAddr: local}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /healthz = %v, %v", resp, err)
	}
	return c
}

// refused checks that a new connection is answered status with Retry-After,
// as problem details, and closed.
func refused(t *testing.T, addr string, status int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("over the limit: %v, want %d", err, status)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status || resp.Header.Get("Retry-After") == "" || !resp.Close || !strings.Contains(string(body), `"status": `+fmt.Sprint(status)) {
		t.Fatalf("over the limit: %s Retry-After %q close %v %s; want %d with Retry-After, closed", resp.Status, resp.Header.Get("Retry-After"), resp.Close, body, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" || !strings.Contains(string(body), `"title": "`+http.StatusText(status)+`"`) {
		t.Fatalf("over the limit: Content-Type %q, body %s; want problem details", ct, body)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("over the limit: connection still open after the answer")
	}
}

func TestConnLimits(t *testing.T) {
	t.Run("per address", func(t *testing.T) {
		addr, ll := serve(t, &fakeBackend{}, Config{MaxConns: 10, MaxConnsPerIP: 2})
		openIdle(t, addr, nil)
		openIdle(t, addr, nil)
		refused(t, addr, http.StatusTooManyRequests)
		// Another address is still served.
		other := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
		if c, err := (&net.Dialer{LocalAddr: other}).Dial("tcp", addr); err != nil {
			t.Logf("cannot dial from %v (%v): not checking that another address is served", other, err)
		} else {
			defer c.Close()
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET /healthz from %v = %v, %v; want 200", other, resp, err)
			}
		}
		if total, mine := ll.counts("127.0.0.1"); mine != 2 || total > 3 {
			t.Fatalf("open = %d, from 127.0.0.1 %d; want 2 from 127.0.0.1", total, mine)
		}
	})
	t.Run("total", func(t *testing.T) {
		addr, ll := serve(t, &fakeBackend{}, Config{MaxConns: 2, MaxConnsPerIP: 10})
		first := openIdle(t, addr, nil)
		openIdle(t, addr, nil)
		refused(t, addr, http.StatusServiceUnavailable)
		// Closing one gives its place back.
		first.Close()
		waitFor(t, func() bool { total, _ := ll.counts("127.0.0.1"); return total == 1 }, "the closed connection's place")
		openIdle(t, addr, nil)
		if n := ll.refused.Load(); n != 1 {
			t.Fatalf("refused = %d, want 1", n)
		}
	})
}

// TestRefusalReadable: a client that sends a large body with a bad token
// reads the 401 rather than a reset, and the server does not read the body
// first.
func TestRefusalReadable(t *testing.T) {
	addr, _ := serve(t, &fakeBackend{}, Config{})
	for _, size := range []int{100 << 10, 4 << 20} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/services", bytes.NewReader(make([]byte, size)))
		req.Header.Set("Authorization", "Bearer nope")
		req.Header.Set("Content-Type", "application/gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%d-byte body with a bad token: %v, want 401", size, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !resp.Close {
			t.Fatalf("%d-byte body with a bad token: %s, close %v; want 401, close", size, resp.Status, resp.Close)
		}
	}
	// The server answers without waiting for a body that does not come.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /v1/tokens HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 401 || !resp.Close {
		t.Fatalf("POST without a token, body withheld = %v, %v; want 401, close", resp, err)
	}
}

// TestStreamingRoute: a route that writes for longer than WriteTimeout takes
// its write deadline over with http.ResponseController; one that does not is
// cut off.
func TestStreamingRoute(t *testing.T) {
	s := New(&fakeBackend{}, Config{WriteTimeout: 300 * time.Millisecond}, nil)
	stream := func(own bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			if own {
				rc.SetWriteDeadline(time.Time{})
			}
			for i := 0; i < 4; i++ {
				fmt.Fprintf(w, "event %d\n", i)
				if rc.Flush() != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	s.mux.HandleFunc("GET /test/stream", stream(true))
	s.mux.HandleFunc("GET /test/plain", stream(false))
	addr, _ := serveServer(t, s)
	for _, tc := range []struct {
		path string
		all  bool
	}{{"/test/stream", true}, {"/test/plain", false}} {
		resp, err := http.Get("http://" + addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := strings.Count(string(body), "event"); (got == 4) != tc.all {
			t.Errorf("GET %s: %d of 4 events (all wanted: %v):\n%s", tc.path, got, tc.all, body)
		}
	}
}

// TestLongHandler: a handler may work for longer than ReadTimeout and
// WriteTimeout once it has the request: neither deadline cancels its context
// or its answer.
func TestLongHandler(t *testing.T) {
	s := New(&fakeBackend{}, Config{ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}, nil)
	s.mux.HandleFunc("/test/long", func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
			io.WriteString(w, "cancelled")
		case <-time.After(600 * time.Millisecond):
			io.WriteString(w, "done")
		}
	})
	addr, _ := serveServer(t, s)
	for _, method := range []string{"GET", "POST"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader(`{"a":1}`)
		}
		req, _ := http.NewRequest(method, "http://"+addr+"/test/long", body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != "done" {
			t.Errorf("%s for longer than the read timeout: %q, want done", method, got)
		}
	}
}
