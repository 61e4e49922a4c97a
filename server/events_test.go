package server

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

func (f *fakeBackend) Publish(ctx context.Context, p Principal, topic string, m json.RawMessage) (api.Published, error) {
	if !p.Operator() && !strings.HasPrefix(topic, p.Name+".") {
		return api.Published{}, Errorf(ErrForbidden, "topic %s: %s may publish only under %s.", topic, p.Name, p.Name)
	}
	if !json.Valid(m) {
		return api.Published{}, Errorf(ErrInvalid, "message: must be a JSON value")
	}
	return api.Published{Topic: topic, Sequence: 7}, nil
}

// TestPublishRoute: POST /v1/events/{topic} answers 202 with the topic and
// sequence, and the Backend's refusals as their kinds say.
func TestPublishRoute(t *testing.T) {
	s := New(&fakeBackend{}, Config{MaxJSONBytes: 64}, nil)
	for _, tc := range []struct {
		name, path, token, body string
		status                  int
		msg                     string
	}{
		{"operator", "/v1/events/orders.new", "op", `{"id":1}`, 202, ""},
		{"submitter in its namespace", "/v1/events/alice.x", "sub", `1`, 202, ""},
		{"submitter elsewhere", "/v1/events/orders.new", "sub", `1`, 403, "only under alice."},
		{"not json", "/v1/events/orders.new", "op", `{`, 400, "JSON"},
		{"too big", "/v1/events/orders.new", "op", `"` + strings.Repeat("x", 100) + `"`, 413, "larger than"},
		{"no token", "/v1/events/orders.new", "", `1`, 401, "bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.msg) {
				t.Fatalf("POST %s = %d %s, want %d mentioning %q", tc.path, w.Code, w.Body, tc.status, tc.msg)
			}
			if tc.status == 202 {
				var got api.Published
				if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Sequence != 7 || got.Topic == "" {
					t.Fatalf("answer %s: %+v, %v", w.Body, got, err)
				}
			}
		})
	}
}
