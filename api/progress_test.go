package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestUploadProgress: a request made with WithUploadProgress reports the
// bytes of its body as they are sent, ending at its size, and still sends
// its length (not chunked).
func TestUploadProgress(t *testing.T) {
	var gotLen int64
	var gotBody int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotLen = r.ContentLength
		b, _ := io.ReadAll(r.Body)
		gotBody = len(b)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"service":{"name":"x"}}`)
	}))
	defer srv.Close()
	var mu sync.Mutex
	var calls []int64
	ctx := WithUploadProgress(context.Background(), func(sent, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if total != 1<<20 {
			t.Errorf("total %d, want %d", total, 1<<20)
		}
		calls = append(calls, sent)
	})
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"), "t")
	if _, err := c.Submit(ctx, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) == 0 || calls[len(calls)-1] != 1<<20 || gotLen != 1<<20 || gotBody != 1<<20 {
		t.Errorf("progress %v, server saw length %d and %d bytes; want it to end at %d", calls, gotLen, gotBody, 1<<20)
	}
}
