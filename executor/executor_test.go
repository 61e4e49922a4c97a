package executor

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestGrantAllowed(t *testing.T) {
	g := Grant{Hosts: []string{"api.example:443", "10.0.0.5:8080"}}
	for _, tc := range []struct {
		url, err string
	}{
		{"https://api.example/x", ""},
		{"https://API.example:443/x", ""},
		{"http://api.example/x", "api.example:80 is not among the hosts"},
		{"http://10.0.0.5:8080/", ""},
		{"ftp://api.example/", "scheme must be http or https"},
		{"https://other.example/", "other.example:443 is not among"},
	} {
		err := g.Allowed(tc.url)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Allowed(%q) = %v, want %q", tc.url, err, tc.err)
		}
	}
	if err := (Grant{}).Allowed("https://a.example/"); err == nil || !strings.Contains(err.Error(), "grants no network") {
		t.Errorf("no grant: %v", err)
	}
	if err := (Grant{Any: true}).Allowed("https://a.example/"); err != nil {
		t.Errorf("any: %v", err)
	}
}

func TestGuardCheck(t *testing.T) {
	own := func() []string { return []string{"127.0.0.1:7070", "0.0.0.0:4222", "[::]:9090"} }
	strict := Guard{Own: own}
	open := Guard{Own: own, AllowPrivate: true}
	for _, tc := range []struct {
		addr           string
		strict, opened bool // allowed
	}{
		{"93.184.216.34:443", true, true},
		{"[2606:2800:220:1:248:1893:25c8:1946]:443", true, true},
		{"127.0.0.1:8080", false, true},
		{"10.1.2.3:80", false, true},
		{"192.168.1.1:80", false, true},
		{"172.16.0.1:80", false, true},
		{"169.254.169.254:80", false, true}, // cloud metadata: link-local
		{"100.64.0.1:80", false, true},
		{"[::1]:80", false, true},
		{"[fc00::1]:80", false, true},
		{"[::ffff:127.0.0.1]:80", false, true},
		{"0.0.0.0:80", false, true},
		// NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48) and 6to4
		// (2002::/16) addresses are judged by the IPv4 address they embed.
		{"[64:ff9b::a00:5]:80", false, true},
		{"[64:ff9b::10.0.0.5]:80", false, true},
		{"[64:ff9b::7f00:1]:80", false, true},
		{"[64:ff9b::a9fe:a9fe]:80", false, true},
		{"[64:ff9b::6440:1]:80", false, true},
		{"[64:ff9b::]:80", false, true},
		{"[64:ff9b::a00:5%eth0]:80", false, true},
		{"[64:ff9b::5db8:d822]:443", true, true},
		{"[64:ff9b:1::c0a8:101]:80", false, true},
		{"[64:ff9b:1:abcd::ac10:1]:80", false, true},
		{"[64:ff9b:1:abcd::5db8:d822]:443", true, true},
		{"[2002:a00:5::1]:80", false, true},
		{"[2002:7f00:1::]:80", false, true},
		{"[2002:a9fe:a9fe:1::1]:80", false, true},
		{"[2002:c0a8:101:ffff::1]:80", false, true},
		{"[2002::1]:80", false, true},
		{"[2002:5db8:d822::1]:443", true, true},
		{"[64:ff9c::a00:5]:80", true, true},      // outside 64:ff9b::/96
		{"[64:ff9b::7f00:1]:7070", false, false}, // the API, through NAT64
		{"[2002:7f00:1::1]:4222", false, false},  // NATS, through 6to4
		{"127.0.0.1:7070", false, false},         // the API
		{"127.0.0.1:4222", false, false},         // NATS on 0.0.0.0: every local address
		{"[::1]:9090", false, false},
		{"not-an-addr", false, false},
	} {
		if err := strict.Check(tc.addr); (err == nil) != tc.strict || err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("strict Check(%s) = %v, want allowed %v", tc.addr, err, tc.strict)
		}
		if err := open.Check(tc.addr); (err == nil) != tc.opened {
			t.Errorf("allow_private Check(%s) = %v, want allowed %v", tc.addr, err, tc.opened)
		}
	}
	if err := strict.Check("[64:ff9b::a00:5]:80"); err == nil || !strings.Contains(err.Error(), "64:ff9b::a00:5 embeds 10.0.0.5, a loopback, link-local or private address") {
		t.Errorf("NAT64 refusal = %v, want it to name the embedded address", err)
	}
}

// TestClient: the guarded client refuses a loopback server when private
// addresses are not allowed, before sending anything, reaches it when
// they are, follows no redirect, and caps what it reads of an answer.
func TestClient(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
			return
		}
		if r.Header.Get("Idempotency-Key") != "k1" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Write([]byte(strings.Repeat("x", 100)))
	}))
	defer srv.Close()
	ctx := context.Background()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	_, err := Do(ctx, Guard{}.Client(time.Second), req, "k1", 10)
	if !errors.Is(err, ErrRefused) || hits != 0 || Transient(0, err) {
		t.Fatalf("private address without allow_private: %v (hits %d)", err, hits)
	}
	c := Guard{AllowPrivate: true}.Client(time.Second)
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	r, err := Do(ctx, c, req, "k1", 10)
	if err != nil || r.Status != 200 || r.Body != "xxxxxxxxxx" || !r.Truncated {
		t.Fatalf("allowed = %+v, %v", r, err)
	}
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/redirect", nil)
	if r, err := Do(ctx, c, req, "k1", 10); err != nil || r.Status != http.StatusFound {
		t.Fatalf("a redirect was followed: %+v, %v", r, err)
	}
}

func TestTransientAndBackoff(t *testing.T) {
	for status, want := range map[int]bool{200: false, 400: false, 404: false, 408: true, 425: true, 429: true, 500: true, 503: true} {
		if Transient(status, nil) != want {
			t.Errorf("Transient(%d) = %v", status, !want)
		}
	}
	if !Transient(0, errors.New("connection reset")) {
		t.Error("no answer is not transient")
	}
	for n := 1; n <= 20; n++ {
		d := Backoff(n, 100*time.Millisecond, time.Second)
		max := min(100*time.Millisecond<<(n-1), time.Second)
		if n > 5 {
			max = time.Second
		}
		if d < max/2 || d > max {
			t.Errorf("Backoff(%d) = %s, want within [%s, %s]", n, d, max/2, max)
		}
	}
	if Key("s", "r", "d") == Key("s", "r", "e") || len(Key("s", "r", "d")) != 32 {
		t.Error("keys of different digests collide, or are not 32 characters")
	}
}
