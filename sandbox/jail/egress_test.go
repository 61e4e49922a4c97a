package jail

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEgressProxy runs the proxy on a unix socket in front of an allowed
// and a forbidden server on loopback.
func TestEgressProxy(t *testing.T) {
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "registry %s", r.URL.Path)
	}))
	defer allowed.Close()
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the forbidden server was reached: %s %s", r.Method, r.URL)
	}))
	defer forbidden.Close()
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	sock := filepath.Join(t.TempDir(), "egress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	p := newEgressProxy([]string{host(allowed)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.serve(ln)
	}()
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		<-done
	}()

	// send writes request on a new connection to the proxy and returns the
	// connection and the response to it.
	send := func(request string) (net.Conn, *bufio.Reader, *http.Response) {
		t.Helper()
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", request, err)
		}
		return c, br, resp
	}
	for _, c := range []struct {
		name, request string
		status        int
		body          string
	}{
		{"get allowed", "GET " + allowed.URL + "/simple/x/ HTTP/1.1\r\nHost: " + host(allowed) + "\r\nConnection: close\r\n\r\n", 200, "registry /simple/x/"},
		{"get forbidden", "GET " + forbidden.URL + "/ HTTP/1.1\r\nHost: " + host(forbidden) + "\r\nConnection: close\r\n\r\n", 403, ""},
		{"get allowed host header, forbidden url", "GET " + forbidden.URL + "/ HTTP/1.1\r\nHost: " + host(allowed) + "\r\nConnection: close\r\n\r\n", 403, ""},
		{"origin form", "GET /simple/ HTTP/1.1\r\nHost: " + host(allowed) + "\r\nConnection: close\r\n\r\n", 403, ""},
		{"https in absolute form", "GET https://" + host(allowed) + "/ HTTP/1.1\r\nHost: " + host(allowed) + "\r\nConnection: close\r\n\r\n", 403, ""},
		{"connect forbidden", "CONNECT " + host(forbidden) + " HTTP/1.1\r\nHost: " + host(forbidden) + "\r\n\r\n", 403, ""},
		{"connect other host", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 403, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, _, resp := send(c.request)
			defer conn.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || (c.body != "" && string(body) != c.body) {
				t.Errorf("%s: %d %q, want %d %q", c.name, resp.StatusCode, body, c.status, c.body)
			}
		})
	}

	t.Run("connect allowed", func(t *testing.T) {
		conn, br, resp := send("CONNECT " + host(allowed) + " HTTP/1.1\r\nHost: " + host(allowed) + "\r\n\r\n")
		defer conn.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %s, want 200", resp.Status)
		}
		if _, err := io.WriteString(conn, "GET /tunnel HTTP/1.1\r\nHost: "+host(allowed)+"\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "registry /tunnel" {
			t.Errorf("through the tunnel: %d %q, want 200 %q", resp.StatusCode, body, "registry /tunnel")
		}
	})

	t.Run("close ends tunnels", func(t *testing.T) {
		conn, br, resp := send("CONNECT " + host(allowed) + " HTTP/1.1\r\nHost: " + host(allowed) + "\r\n\r\n")
		defer conn.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %s, want 200", resp.Status)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Errorf("read from a tunnel after Close = nil, want EOF")
		}
	})
}
