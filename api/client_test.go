package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestClientErrors: a problem details answer becomes an *Error with the
// status, the detail as its message, the run it is about and Retry-After; a
// body that is not problem details still gives its text.
func TestClientErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/v1/services/s/fire":
			w.Header().Set("Retry-After", "3")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"skipped: concurrency limit reached","run":{"id":"r1","service":"s","outcome":"skipped"}}`))
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"type":"about:blank","title":"Bad Request","status":400,"detail":"invalid token request","problems":["name: must match [a-z0-9][a-z0-9-]{0,62}","role: must be submitter or operator"]}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	_, err := NewClient(srv.URL, "tok").Fire(ctx, "s", nil)
	var e *Error
	if !errors.As(err, &e) || e.Status != 429 || e.Title != "Too Many Requests" || e.RetryAfter != 3 || e.Run == nil || e.Run.ID != "r1" || e.Error() != "skipped: concurrency limit reached" {
		t.Fatalf("429 answer = %#v", err)
	}
	// The error reads as the CLI prints it: the detail, then a problem a line.
	_, err = NewClient(srv.URL, "tok").CreateToken(ctx, "X", "root")
	if want := "invalid token request\n  name: must match [a-z0-9][a-z0-9-]{0,62}\n  role: must be submitter or operator"; err == nil || err.Error() != want {
		t.Fatalf("400 answer = %v, want %q", err, want)
	}
	_, err = NewClient(srv.URL, "wrong").Fire(ctx, "s", nil)
	if !errors.As(err, &e) || e.Status != 401 || e.Message != "no token" {
		t.Fatalf("401 answer = %#v", err)
	}
}

// TestListRunsQuery: a page query travels as the query parameters the API
// documents, and the answer's next cursor comes back.
func TestListRunsQuery(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.EscapedPath() + "?" + r.URL.RawQuery
		w.Write([]byte(`{"runs":[{"id":"a"}],"next":"before:7"}`))
	}))
	defer srv.Close()
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l, err := NewClient(srv.URL, "").ListRuns(context.Background(), "my svc", RunQuery{Limit: 5, Cursor: "before:9", Since: since})
	if err != nil || len(l.Runs) != 1 || l.Next != "before:7" {
		t.Fatalf("ListRuns = %+v, %v", l, err)
	}
	if want := "/v1/services/my%20svc/runs?cursor=before%3A9&limit=5&since=2026-01-02T03%3A04%3A05Z"; got != want {
		t.Fatalf("request = %s, want %s", got, want)
	}
}
