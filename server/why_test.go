package server

import (
	"context"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

var _ WhyBackend = (*fakeBackend)(nil)

func (f *fakeBackend) Why(ctx context.Context, p Principal, service string, since time.Time) (api.Why, error) {
	return api.Why{Service: service, Since: since}, nil
}

func TestWhySince(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{"", time.Time{}, false},
		{"1h", now.Add(-time.Hour), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"2026-01-02T14:00:00Z", time.Date(2026, 1, 2, 14, 0, 0, 0, time.UTC), false},
		{"2025-01-01T00:00:00Z", now.Add(-maxWhyWindow), false}, // clamped
		{"0s", time.Time{}, true},
		{"-1h", time.Time{}, true},
		{"745h", time.Time{}, true},
		{"2026-01-02T16:00:00Z", time.Time{}, true}, // future
		{"yesterday", time.Time{}, true},
	} {
		got, err := whySince(tc.in, now)
		if (err != nil) != tc.bad || !got.Equal(tc.want) {
			t.Errorf("whySince(%q) = %v, %v; want %v, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestWhyRoute(t *testing.T) {
	s := New(&fakeBackend{}, Config{}, nil)
	for _, tc := range []struct {
		path, token string
		status      int
	}{
		{"/v1/services/x/why", "sub", 200},
		{"/v1/services/x/why?since=30m", "op", 200},
		{"/v1/services/x/why?since=soon", "op", 400},
		{"/v1/services/x/why", "", 401},
	} {
		if code, e := do(t, s, "GET", tc.path, tc.token, "", ""); code != tc.status {
			t.Errorf("GET %s as %q = %d %s, want %d", tc.path, tc.token, code, e.Message, tc.status)
		}
	}
}
