package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// The fake backend's streams hold three events after id 10, then end;
// what the node streams is tested end to end in package node.
func (f *fakeBackend) Watch(ctx context.Context, p Principal, q api.WatchQuery) (<-chan api.WatchEvent, error) {
	return fakeEvents(q.After), nil
}

func (f *fakeBackend) Logs(ctx context.Context, p Principal, service string, q api.LogQuery) (<-chan api.WatchEvent, error) {
	return fakeEvents(q.After), nil
}

func fakeEvents(after uint64) <-chan api.WatchEvent {
	ch := make(chan api.WatchEvent, 3)
	for id := uint64(11); id <= 13; id++ {
		if id > after {
			ch <- api.WatchEvent{ID: id, Kind: api.WatchRunLog, Service: "x", Line: "line"}
		}
	}
	close(ch)
	return ch
}

// TestWatchResumeQuery: Last-Event-ID, else since, says where a stream
// resumes; a value that is no id is refused naming where it came from.
func TestWatchResumeQuery(t *testing.T) {
	s := New(&fakeBackend{}, Config{}, nil)
	for _, tc := range []struct {
		name, path, header string
		status             int
		want               string // the ids streamed, or the error's words
	}{
		{"fresh", "/v1/watch", "", 200, "11 12 13"},
		{"header", "/v1/watch", "11", 200, "12 13"},
		{"since", "/v1/watch?since=12", "", 200, "13"},
		{"header wins", "/v1/watch?since=1", "12", 200, "13"},
		{"logs", "/v1/services/x/logs?follow=1&since=12", "", 200, "13"},
		{"bad header", "/v1/watch", "abc", 400, `Last-Event-ID: must be an event id (a decimal number), got "abc"`},
		{"bad since", "/v1/watch?since=-1", "", 400, `since: must be an event id`},
		{"bad follow", "/v1/services/x/logs?follow=yes", "", 400, `follow: must be 1 or 0, got "yes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			req.Header.Set("Authorization", "Bearer sub")
			if tc.header != "" {
				req.Header.Set("Last-Event-ID", tc.header)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("GET %s = %d %s, want %d", tc.path, w.Code, w.Body, tc.status)
			}
			if tc.status != 200 {
				var e api.Error
				json.Unmarshal(w.Body.Bytes(), &e)
				if !strings.Contains(e.Message, tc.want) {
					t.Fatalf("GET %s = %s, want it to say %q", tc.path, w.Body, tc.want)
				}
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type = %q", ct)
			}
			var ids []string
			for _, line := range strings.Split(w.Body.String(), "\n") {
				if id, ok := strings.CutPrefix(line, "id: "); ok {
					ids = append(ids, id)
				}
			}
			if got := strings.Join(ids, " "); got != tc.want {
				t.Errorf("ids = %q, want %q\n%s", got, tc.want, w.Body)
			}
			if !strings.Contains(w.Body.String(), "event: run.log\ndata: {") {
				t.Errorf("no event and data lines:\n%s", w.Body)
			}
		})
	}
}

// TestWatchOutlivesWriteTimeout: an event stream stays open past the
// server's WriteTimeout, with heartbeats while idle.
func TestWatchOutlivesWriteTimeout(t *testing.T) {
	old := WatchHeartbeat
	WatchHeartbeat = 50 * time.Millisecond
	defer func() { WatchHeartbeat = old }()
	ch := make(chan api.WatchEvent)
	b := &blockingWatch{ch: ch}
	s := New(b, Config{WriteTimeout: 200 * time.Millisecond}, nil)
	srv := httptest.NewUnstartedServer(s)
	srv.Config = s.HTTPServer(nil)
	srv.Start()
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/v1/watch", nil)
	req.Header.Set("Authorization", "Bearer op")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(600 * time.Millisecond) // three WriteTimeouts
	ch <- api.WatchEvent{ID: 7, Kind: api.WatchRunStart, Service: "x"}
	close(ch)
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the stream: %v", err)
	}
	body := string(data)
	if !strings.Contains(body, "id: 7\nevent: run.started\n") {
		t.Fatalf("stream after 3 write timeouts lost its event:\n%s", body)
	}
	if !strings.Contains(body, ": ping\n\n") {
		t.Errorf("no heartbeat while idle:\n%s", body)
	}
}

type blockingWatch struct {
	fakeBackend
	ch chan api.WatchEvent
}

func (b *blockingWatch) Watch(ctx context.Context, p Principal, q api.WatchQuery) (<-chan api.WatchEvent, error) {
	return b.ch, nil
}
