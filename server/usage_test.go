package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

var _ UsageBackend = (*fakeBackend)(nil)

func (f *fakeBackend) Usage(ctx context.Context, p Principal, service string, since time.Time) (api.UsageReport, error) {
	return api.UsageReport{Service: service, Since: since}, nil
}

// TestUsageRoute refuses a usage question without a service or with a
// bad since, naming the parameter, and answers a good one.
func TestUsageRoute(t *testing.T) {
	s := New(&fakeBackend{}, Config{}, nil)
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/v1/usage", 400, "service: required"},
		{"/v1/usage?service=x&since=yesterday", 400, "since: must be"},
		{"/v1/usage?service=x&since=1000h", 400, "since: must be"},
		{"/v1/usage?service=x", 200, ""},
		{"/v1/usage?service=x&since=24h", 200, ""},
	} {
		status, e := do(t, s, "GET", tc.path, "op", "", "")
		if status != tc.status || !strings.Contains(e.Message, tc.want) {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, status, e.Message, tc.status, tc.want)
		}
	}
}
