package source

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/archive"
)

func testArchive(t *testing.T, content string) ([]byte, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte("name: x\nversion: 1.0.0\nruntime: {entry: main.wasm}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.wasm"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := archive.PackTo(&buf, dir)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), info.Digest
}

// servers starts TLS servers and returns a client that trusts all of them.
func servers(t *testing.T, handlers ...http.Handler) ([]*httptest.Server, *http.Client) {
	t.Helper()
	pool := x509.NewCertPool()
	var srvs []*httptest.Server
	for _, h := range handlers {
		s := httptest.NewTLSServer(h)
		t.Cleanup(s.Close)
		pool.AddCert(s.Certificate())
		srvs = append(srvs, s)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return srvs, &http.Client{Transport: tr}
}

func hostOf(s *httptest.Server) string {
	u, _ := url.Parse(s.URL)
	return u.Host
}

func TestFetch(t *testing.T) {
	data, digest := testArchive(t, "wasm bytes")
	var hops int
	mux := http.NewServeMux()
	mux.HandleFunc("/svc.tar.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(data) })
	mux.HandleFunc("/hop/{n}", func(w http.ResponseWriter, r *http.Request) {
		hops++
		var n int
		fmt.Sscan(r.PathValue("n"), &n)
		if n == 0 {
			http.Redirect(w, r, "/svc.tar.gz", http.StatusFound)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush() // no Content-Length: the cap must hold while streaming
		for range 64 {
			w.Write(bytes.Repeat([]byte("x"), 1024))
		}
	})
	mux.HandleFunc("/missing", http.NotFound)
	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close)
	other := http.NewServeMux()
	other.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write(data) })
	srvs, client := servers(t, mux, other)
	mux.HandleFunc("/to-other", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srvs[1].URL+"/svc.tar.gz", http.StatusFound)
	})
	mux.HandleFunc("/to-plain", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/svc.tar.gz", http.StatusFound)
	})
	base, allowed := srvs[0].URL, []string{hostOf(srvs[0])}
	_, otherDigest := testArchive(t, "other bytes")

	got, err := Fetch(context.Background(), client, base+"/svc.tar.gz", digest, archive.Limits{}, allowed)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Fetch = %d bytes, %v; want the archive", len(got), err)
	}
	if _, err := Fetch(context.Background(), client, base+"/hop/2", digest, archive.Limits{}, allowed); err != nil {
		t.Errorf("Fetch after %d redirects = %v, want success", MaxRedirects, err)
	}
	both := []string{hostOf(srvs[0]), hostOf(srvs[1])}
	if _, err := Fetch(context.Background(), client, base+"/to-other", digest, archive.Limits{}, both); err != nil {
		t.Errorf("Fetch redirected to another allowed host = %v", err)
	}

	for _, tc := range []struct {
		name     string
		location string
		digest   string
		lim      archive.Limits
		allowed  []string
		want     error
		text     string
	}{
		{"http", plain.URL + "/svc.tar.gz", digest, archive.Limits{}, []string{hostOf(plain)}, ErrNotHTTPS, "not an https URL"},
		{"host not allowed", base + "/svc.tar.gz", digest, archive.Limits{}, []string{"github.com"}, ErrNotAllowed, "allowed_sources: host not allowed: 127.0.0.1:"},
		{"nothing allowed", base + "/svc.tar.gz", digest, archive.Limits{}, nil, ErrNotAllowed, "the list is empty"},
		{"other port", base + "/svc.tar.gz", digest, archive.Limits{}, []string{"127.0.0.1"}, ErrNotAllowed, "allowed_sources"},
		{"credentials", strings.Replace(base, "https://", "https://u:p@", 1) + "/svc.tar.gz", digest, archive.Limits{}, allowed, nil, "credentials in the URL"},
		{"too many redirects", base + "/hop/3", digest, archive.Limits{}, allowed, ErrRedirects, "redirects: too many redirects: more than 3"},
		{"redirect to disallowed host", base + "/to-other", digest, archive.Limits{}, allowed, ErrNotAllowed, "redirect to https://" + hostOf(srvs[1]) + "/svc.tar.gz: allowed_sources"},
		{"redirect to http", base + "/to-plain", digest, archive.Limits{}, append(allowed, hostOf(plain)), ErrNotHTTPS, "redirect to http://"},
		{"content-length over cap", base + "/svc.tar.gz", digest, archive.Limits{MaxCompressed: int64(len(data) - 1)}, allowed, ErrTooLarge, fmt.Sprintf("max_payload: too large: Content-Length %d is above %d bytes", len(data), len(data)-1)},
		{"stream over cap", base + "/chunked", digest, archive.Limits{MaxCompressed: 10 << 10}, allowed, ErrTooLarge, "max_payload: too large: body is larger than 10240 bytes"},
		{"not found", base + "/missing", digest, archive.Limits{}, allowed, ErrStatus, "unexpected HTTP status: 404 Not Found"},
		{"digest mismatch", base + "/svc.tar.gz", otherDigest, archive.Limits{}, allowed, ErrDigest, "digest: digest mismatch: archive is " + digest},
		{"not an archive", base + "/chunked", digest, archive.Limits{}, allowed, archive.ErrFormat, "archive:"},
		{"negative limits", base + "/svc.tar.gz", digest, archive.Limits{MaxSize: -1}, allowed, nil, "MaxSize is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hops = 0
			got, err := Fetch(context.Background(), client, tc.location, tc.digest, tc.lim, tc.allowed)
			if err == nil {
				t.Fatalf("Fetch = %d bytes, want an error", len(got))
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Fetch = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.HasPrefix(err.Error(), "source ") {
				t.Errorf("Fetch = %q, want it to start with \"source \" and contain %q", err, tc.text)
			}
			if got != nil {
				t.Errorf("Fetch returned %d bytes with an error", len(got))
			}
		})
	}
	if hops > MaxRedirects+1 {
		t.Errorf("followed %d redirects", hops)
	}
}

func TestFetchContext(t *testing.T) {
	data, digest := testArchive(t, "x")
	srvs, client := servers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Fetch(ctx, client, srvs[0].URL+"/a.tgz", digest, archive.Limits{}, []string{hostOf(srvs[0])}); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch(cancelled) = %v, want context.Canceled", err)
	}
}

func TestHostAllowed(t *testing.T) {
	allowed := []string{"github.com", "*.githubusercontent.com", "git.example.com:8443", "10.0.0.1", "[::1]:9443"}
	for host, want := range map[string]bool{
		"github.com":                           true,
		"GitHub.com.":                          true,
		"github.com:443":                       true,
		"github.com:8443":                      false,
		"api.github.com":                       false,
		"githubusercontent.com":                false,
		"raw.githubusercontent.com":            true,
		"a.b.githubusercontent.com":            true,
		"evilgithubusercontent.com":            false,
		"git.example.com:8443":                 true,
		"git.example.com":                      false,
		"10.0.0.1":                             true,
		"[::1]:9443":                           true,
		"[::1]":                                false,
		"":                                     false,
		"githubusercontent.com.evil.com":       false,
		"raw.githubusercontent.com:443":        true,
		"raw.githubusercontent.com.evil.com:1": false,
	} {
		if got := HostAllowed(host, allowed); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestCheckPattern(t *testing.T) {
	for _, ok := range []string{"github.com", "*.example.com", "git.example.com:8443", "10.0.0.1", "[::1]:443", "localhost", "index.scala-lang.org"} {
		if err := CheckPattern(ok); err != nil {
			t.Errorf("CheckPattern(%q) = %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                     "must not be empty",
		"https://github.com":   "not a URL",
		"*.com":                "at least two labels",
		"github.com:0":         "port \"0\"",
		"github.com:x":         "port",
		"bad_host!":            "must be a host name",
		"a..b":                 "must be a host name",
		"*.*.example.com":      "must be a host name",
		"github.com/org/repo":  "not a URL",
		"-github.com":          "must be a host name",
		"github.com:443:1":     "must be a host name",
		"user@github.com":      "not a URL",
		"github.com:99999":     "port",
		"example.com:65536":    "port",
		"exa mple.com":         "not a URL",
		"*.":                   "at least two labels",
		"*.example.com:eighty": "port",
	} {
		err := CheckPattern(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPattern(%q) = %v, want error containing %q", bad, err, want)
		}
	}
}
