package node

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
)

// HTTPConfig bounds the HTTP API's connections and how long each part of an
// exchange may take, and says who may read /metrics and what it shows. An
// empty or zero field takes its default.
//
//	http:
//	  read_header_timeout: 10s
//	  read_timeout: 30s
//	  upload_min_rate: 16Ki
//	  write_timeout: 30s
//	  idle_timeout: 30s
//	  max_header_bytes: 128Ki
//	  max_conns: 512
//	  max_conns_per_ip: 64
//	  metrics: {access: open, service_labels: operator}
//	  hooks_listen: ""    # host:port: webhooks on a listener of their own
//	  max_hook_body: 1Mi
type HTTPConfig struct {
	// ReadHeaderTimeout is how long a client may take to send a request's
	// line and headers. Default 10s.
	ReadHeaderTimeout manifest.Duration `json:"read_header_timeout" yaml:"read_header_timeout"`
	// ReadTimeout is how long a client may take to send a whole request,
	// headers and body, on every route but submissions (POST
	// /v1/services, see UploadMinRate). Default 30s.
	ReadTimeout manifest.Duration `json:"read_timeout" yaml:"read_timeout"`
	// UploadMinRate is the pace, in bytes per second, a submission's body
	// must keep on average: it may take read_timeout plus its size divided
	// by this rate, so a steady upload of a 64 MiB archive may take up to
	// 30s + 68m16s at the default, and a client that falls behind is cut
	// off. Default 16Ki.
	UploadMinRate string `json:"upload_min_rate" yaml:"upload_min_rate"`
	// WriteTimeout is how long a client may take to receive a response,
	// from the response's first byte. Default 30s.
	WriteTimeout manifest.Duration `json:"write_timeout" yaml:"write_timeout"`
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. Default 30s.
	IdleTimeout manifest.Duration `json:"idle_timeout" yaml:"idle_timeout"`
	// MaxHeaderBytes caps a request's line and headers (431 above it).
	// Submission attestations alone may take 64Ki. Default 128Ki.
	MaxHeaderBytes string `json:"max_header_bytes" yaml:"max_header_bytes"`
	// MaxConns caps the connections open at once; one more is answered 503
	// with Retry-After and closed. Default 512.
	MaxConns int `json:"max_conns" yaml:"max_conns"`
	// MaxConnsPerIP caps the connections open at once from one client IP
	// address; one more is answered 429 with Retry-After and closed. Behind
	// a reverse proxy, set it to max_conns. Default 64.
	MaxConnsPerIP int `json:"max_conns_per_ip" yaml:"max_conns_per_ip"`
	// Metrics says who may read GET /metrics and what it shows.
	Metrics MetricsConfig `json:"metrics" yaml:"metrics"`
	// HooksListen, when set (host:port), serves the webhooks (/hooks/...)
	// on a listener of their own and no longer on the API's listen
	// address, so that the API can stay private. Default "": on the API's.
	HooksListen string `json:"hooks_listen" yaml:"hooks_listen"`
	// MaxHookBody caps a webhook request's body, from 1Ki to 64Mi; a
	// larger one is answered 413 and runs nothing. Default 1Mi.
	MaxHookBody string `json:"max_hook_body" yaml:"max_hook_body"`
}

// MetricsConfig says who may read GET /metrics and which services appear in
// it by name.
type MetricsConfig struct {
	// Access is "open" (anyone who can reach the API) or "token" (an
	// operator bearer token). Default open.
	Access string `json:"access" yaml:"access"`
	// ServiceLabels says which services keep their name in the service
	// label of the per-service families (andromeda_invocations_total,
	// andromeda_invocation_duration_seconds):
	//
	//	all       every service.
	//	operator  services owned by the operator (owner "operator"); every
	//	          other service is counted under service="_submitter".
	//	none      none: the operator's services are counted under
	//	          service="_operator", the others under service="_submitter".
	//
	// Service names never start with "_". Default operator.
	ServiceLabels string `json:"service_labels" yaml:"service_labels"`
}

// The metrics access and service label choices (MetricsConfig).
const (
	metricsOpen           = "open"
	metricsToken          = "token"
	serviceLabelsAll      = "all"
	serviceLabelsOperator = "operator"
	serviceLabelsNone     = "none"
)

// DefaultHTTPConfig returns the documented defaults, which are
// server.DefaultConfig's.
func DefaultHTTPConfig() HTTPConfig {
	d := server.DefaultConfig()
	dur := func(v time.Duration) manifest.Duration {
		m, _ := manifest.ParseDuration(v.String())
		return m
	}
	return HTTPConfig{
		ReadHeaderTimeout: dur(d.ReadHeaderTimeout),
		ReadTimeout:       dur(d.ReadTimeout),
		UploadMinRate:     "16Ki",
		WriteTimeout:      dur(d.WriteTimeout),
		IdleTimeout:       dur(d.IdleTimeout),
		MaxHeaderBytes:    "128Ki",
		MaxHookBody:       "1Mi",
		MaxConns:          d.MaxConns,
		MaxConnsPerIP:     d.MaxConnsPerIP,
		Metrics:           MetricsConfig{Access: metricsOpen, ServiceLabels: serviceLabelsOperator},
	}
}

// Validate checks every field and reports every problem with its key
// (http.…). Empty fields are valid: they take their defaults.
func (c HTTPConfig) Validate() error {
	var errs []error
	bad := func(key, rule string) { errs = append(errs, fmt.Errorf("http.%s: %s", key, rule)) }
	for _, d := range []struct {
		key string
		v   manifest.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout},
		{"read_timeout", c.ReadTimeout},
		{"write_timeout", c.WriteTimeout},
		{"idle_timeout", c.IdleTimeout},
	} {
		if !d.v.IsZero() && (d.v.Std() < 10*time.Millisecond || d.v.Std() > 24*time.Hour) {
			bad(d.key, "must be from 10ms to 24h")
		}
	}
	for _, s := range []struct {
		key, v   string
		min, max int64
	}{
		{"upload_min_rate", c.UploadMinRate, 1, 1 << 30},
		{"max_header_bytes", c.MaxHeaderBytes, 8 << 10, 16 << 20},
		{"max_hook_body", c.MaxHookBody, 1 << 10, 64 << 20},
	} {
		if s.v == "" {
			continue
		}
		if n, err := parseBytes(s.v); err != nil {
			bad(s.key, err.Error())
		} else if n < s.min || n > s.max {
			bad(s.key, fmt.Sprintf("must be from %d to %d bytes", s.min, s.max))
		}
	}
	if c.HooksListen != "" {
		if _, _, err := net.SplitHostPort(c.HooksListen); err != nil {
			bad("hooks_listen", "must be host:port")
		}
	}
	if c.MaxConns < 0 || c.MaxConns > 1_000_000 {
		bad("max_conns", "must be from 1 to 1000000 (0: the default)")
	}
	if c.MaxConnsPerIP < 0 || c.MaxConnsPerIP > 1_000_000 {
		bad("max_conns_per_ip", "must be from 1 to 1000000 (0: the default)")
	}
	switch c.Metrics.Access {
	case "", metricsOpen, metricsToken:
	default:
		bad("metrics.access", "must be open or token")
	}
	switch c.Metrics.ServiceLabels {
	case "", serviceLabelsAll, serviceLabelsOperator, serviceLabelsNone:
	default:
		bad("metrics.service_labels", "must be all, operator or none")
	}
	return errors.Join(errs...)
}

// serverConfig sets sc's connection, timeout and metrics fields from c; its
// empty fields leave server.New to apply the defaults. c must be valid.
func (c HTTPConfig) serverConfig(sc server.Config) server.Config {
	sc.ReadHeaderTimeout = c.ReadHeaderTimeout.Std()
	sc.ReadTimeout = c.ReadTimeout.Std()
	sc.WriteTimeout = c.WriteTimeout.Std()
	sc.IdleTimeout = c.IdleTimeout.Std()
	if c.UploadMinRate != "" {
		sc.UploadMinRate, _ = parseBytes(c.UploadMinRate)
	}
	if c.MaxHeaderBytes != "" {
		n, _ := parseBytes(c.MaxHeaderBytes)
		sc.MaxHeaderBytes = int(n)
	}
	if c.MaxHookBody != "" {
		sc.MaxHookBody, _ = parseBytes(c.MaxHookBody)
	}
	sc.NoHooks = c.HooksListen != ""
	sc.MaxConns = c.MaxConns
	sc.MaxConnsPerIP = c.MaxConnsPerIP
	sc.MetricsToken = c.Metrics.Access == metricsToken
	return sc
}

// serviceLabels is the service_labels choice, defaulted.
func (c HTTPConfig) serviceLabels() string {
	if c.Metrics.ServiceLabels == "" {
		return serviceLabelsOperator
	}
	return c.Metrics.ServiceLabels
}
