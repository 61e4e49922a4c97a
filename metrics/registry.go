// Package metrics holds the node's Prometheus registry, built on
// prometheus/client_golang: a registry of its own (never the global default)
// with the Go runtime and process collectors, the /metrics handler that
// serves it, the constructors the node declares its families with, and the
// histogram buckets for invocation durations.
//
// It does not know what the node measures, or which services may appear in
// a label (the node's http.metrics.service_labels policy): the node
// registers its families at start and keeps the series it updates on hot
// paths. Code that needs more than the constructors here uses client_golang
// directly on the embedded prometheus.Registry. As client_golang does, the
// exposition writes a series' labels sorted by name, whatever order the
// family declared them in: {outcome="ok",service="billing"}.
package metrics

import (
	"fmt"
	"math"
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// Registry is a prometheus.Registry of the node's own, created with the Go
// runtime (go_*) and process (process_*) collectors, that serves its
// families over HTTP. The constructors register a family and panic when its
// name or label names are invalid or taken, or a histogram's buckets are
// not finite and strictly increasing: families are declared by code at
// start, so these are programming errors, caught there rather than at the
// first observation. Names are checked against the classic rules
// ([a-zA-Z_:][a-zA-Z0-9_:]*, no colon in label names), which every scraper
// reads without escaping; client_golang alone would take any UTF-8. Safe
// for concurrent use.
type Registry struct {
	*prometheus.Registry
	handler http.Handler
}

// NewRegistry returns a Registry holding only the Go runtime and process
// collectors and the handler's own error counter,
// promhttp_metric_handler_errors_total.
func NewRegistry() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Registry{
		Registry: reg,
		// A collector that fails (the process collector when /proc cannot
		// be read) costs its own series, not the whole scrape; failures are
		// counted in promhttp_metric_handler_errors_total.
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorHandling: promhttp.ContinueOnError,
			Registry:      reg,
		}),
	}
}

// ServeHTTP serves the exposition (GET /metrics) in the format the scraper
// asks for: the text format 0.0.4 by default, the protobuf format to a
// scraper that accepts it; gzip- or zstd-compressed when accepted.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.handler.ServeHTTP(w, req)
}

// NewCounterVec registers a counter family with the given label names.
func (r *Registry) NewCounterVec(name, help string, labelNames ...string) *prometheus.CounterVec {
	checkNames(name, labelNames)
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labelNames)
	r.MustRegister(v)
	return v
}

// NewCounterFunc registers a counter without labels whose value fn returns
// at each scrape, for totals kept elsewhere. fn must be safe to call
// concurrently and must not use the Registry.
func (r *Registry) NewCounterFunc(name, help string, fn func() float64) {
	checkNames(name, nil)
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// NewGaugeFunc registers a gauge without labels whose value fn returns at
// each scrape. fn must be safe to call concurrently and must not use the
// Registry.
func (r *Registry) NewGaugeFunc(name, help string, fn func() float64) {
	checkNames(name, nil)
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// NewHistogramVec registers a histogram family with the given upper bucket
// bounds (finite, strictly increasing; the +Inf bucket is implicit) and
// label names. A nil buckets means DurationBuckets(). "le" is not a valid
// label name here.
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labelNames ...string) *prometheus.HistogramVec {
	checkNames(name, labelNames)
	if buckets == nil {
		buckets = DurationBuckets()
	}
	if len(buckets) == 0 {
		panic(fmt.Sprintf("metrics: register %s: no buckets", name))
	}
	for i, b := range buckets {
		if math.IsNaN(b) || math.IsInf(b, 0) || i > 0 && b <= buckets[i-1] {
			panic(fmt.Sprintf("metrics: register %s: buckets %v are not finite and strictly increasing", name, buckets))
		}
	}
	if slices.Contains(labelNames, "le") {
		panic(fmt.Sprintf("metrics: register %s: label name \"le\" is reserved for histograms", name))
	}
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labelNames)
	r.MustRegister(v)
	return v
}

// checkNames panics unless name and labelNames follow the classic rules.
// Reserved (__) and duplicate label names are left to client_golang, which
// refuses them at registration.
func checkNames(name string, labelNames []string) {
	if !model.LegacyValidation.IsValidMetricName(name) {
		panic(fmt.Sprintf("metrics: register %q: invalid metric name", name))
	}
	for _, l := range labelNames {
		if !model.LegacyValidation.IsValidLabelName(l) {
			panic(fmt.Sprintf("metrics: register %s: invalid label name %q", name, l))
		}
	}
}

// DurationBuckets returns the default histogram buckets, in seconds, suited
// to invocation durations from 50µs (a warm wasm call) to 60s (a long
// process run): 50µs, 100µs, 250µs, 500µs, 1ms, 2.5ms, 5ms, 10ms, 25ms,
// 50ms, 100ms, 250ms, 500ms, 1s, 2.5s, 5s, 10s, 30s, 60s. Each call returns
// a new slice.
func DurationBuckets() []float64 {
	return []float64{
		0.00005, 0.0001, 0.00025, 0.0005,
		0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
		0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
	}
}
