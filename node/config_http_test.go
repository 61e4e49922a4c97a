package node

import (
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
)

func TestHTTPConfig(t *testing.T) {
	// The documented defaults are the server's.
	def := DefaultHTTPConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("DefaultHTTPConfig().Validate() = %v", err)
	}
	got, want := def.serverConfig(server.Config{}), server.DefaultConfig()
	want.MaxArchiveBytes, want.MaxJSONBytes = 0, 0
	if got != want {
		t.Errorf("DefaultHTTPConfig() gives %+v,\nserver.DefaultConfig() is %+v", got, want)
	}
	// Empty fields leave the server to apply its defaults.
	if got := (HTTPConfig{}).serverConfig(server.Config{}); got != (server.Config{}) {
		t.Errorf("an empty http section gives %+v, want all zero", got)
	}

	cfg, err := ParseConfig([]byte("http:\n  read_timeout: 5s\n  upload_min_rate: 1Mi\n  max_conns_per_ip: 8\n  metrics: {access: token, service_labels: all}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.HTTP.serverConfig(server.Config{})
	if sc.ReadTimeout.String() != "5s" || sc.UploadMinRate != 1<<20 || sc.MaxConnsPerIP != 8 || !sc.MetricsToken || cfg.HTTP.serviceLabels() != "all" {
		t.Errorf("parsed http section gives %+v, labels %s", sc, cfg.HTTP.serviceLabels())
	}
	if _, err := ParseConfig([]byte("http:\n  read_timeuot: 5s\n"), false); err == nil || !strings.Contains(err.Error(), "read_timeuot") {
		t.Errorf("unknown key: %v, want it named", err)
	}

	for _, tc := range []struct {
		name string
		c    HTTPConfig
		want string
	}{
		{"tiny timeout", HTTPConfig{IdleTimeout: mustDuration(t, "1ms")}, "http.idle_timeout: must be from 10ms to 24h"},
		{"rate not a size", HTTPConfig{UploadMinRate: "fast"}, "http.upload_min_rate: must be a size"},
		{"tiny header", HTTPConfig{MaxHeaderBytes: "1Ki"}, "http.max_header_bytes: must be from 8192"},
		{"negative conns", HTTPConfig{MaxConns: -1}, "http.max_conns: must be from 1"},
		{"access", HTTPConfig{Metrics: MetricsConfig{Access: "public"}}, "http.metrics.access: must be open or token"},
		{"labels", HTTPConfig{Metrics: MetricsConfig{ServiceLabels: "some"}}, "http.metrics.service_labels: must be all, operator or none"},
	} {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestMetricsServiceLabel(t *testing.T) {
	owners := map[string]string{"billing": "operator", "scraper": "alice", "ops-ci": "ci"}
	owner := func(name string) string { return owners[name] }
	for _, tc := range []struct {
		labels, service, want string
	}{
		{"all", "scraper", "scraper"},
		{"all", "billing", "billing"},
		{"operator", "billing", "billing"},
		{"operator", "scraper", "_submitter"},
		{"operator", "ops-ci", "_submitter"}, // owned by another operator-role token: its role is not on record
		{"operator", "removed", "_submitter"},
		{"none", "billing", "_operator"},
		{"none", "scraper", "_submitter"},
	} {
		m := &nodeMetrics{labels: tc.labels, owner: owner}
		if got := m.label(tc.service); got != tc.want {
			t.Errorf("service_labels %s: label(%q) = %q, want %q", tc.labels, tc.service, got, tc.want)
		}
	}
}

func mustDuration(t *testing.T, s string) manifest.Duration {
	t.Helper()
	d, err := manifest.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
