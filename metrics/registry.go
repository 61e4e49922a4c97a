// Package metrics holds a minimal Prometheus registry: counters, gauges and
// histograms, with or without labels, and their exposition in the Prometheus
// text format 0.0.4 (the format /metrics serves), so the node needs no client
// library.
//
// It does not push, keep history, expose summaries or the protobuf and
// OpenMetrics formats, or know what the node measures: the node registers
// its metrics at start and keeps the children it updates on hot paths. It
// imports only the standard library.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// ContentType is the media type of the exposition Registry writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Registry is a set of metric families with unique names, written in the text
// format by WriteTo and ServeHTTP. The constructors register a family and
// panic on an invalid or duplicate name or label name: metrics are declared
// by code at start, so these are programming errors. Safe for concurrent use.
type Registry struct {
	mu       sync.RWMutex
	families map[string]family // by family name
	taken    map[string]string // sample names in use → the family using them
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{families: make(map[string]family), taken: make(map[string]string)}
}

// family is one registered metric family.
type family interface {
	describe() *desc
	// appendTo appends the family's samples, sorted by label values, to b.
	appendTo(b []byte) []byte
}

// desc is what a family is: its name, help, type and label names.
type desc struct {
	name, help, typ string
	labels          []string
}

func (d *desc) describe() *desc { return d }

// NewCounter registers a counter without labels and returns it.
func (r *Registry) NewCounter(name, help string) *Counter {
	return r.NewCounterVec(name, help).With()
}

// NewCounterVec registers a counter family with the given label names.
func (r *Registry) NewCounterVec(name, help string, labelNames ...string) *CounterVec {
	v := &CounterVec{newVec(r.newDesc(name, help, "counter", labelNames), func() *Counter { return new(Counter) })}
	r.register(v, name)
	return v
}

// NewCounterFunc registers a counter without labels whose value fn returns
// at each scrape, for totals kept elsewhere. fn must be safe to call
// concurrently and must not use the Registry.
func (r *Registry) NewCounterFunc(name, help string, fn func() float64) {
	r.register(&funcFamily{r.newDesc(name, help, "counter", nil), fn}, name)
}

// NewGauge registers a gauge without labels and returns it.
func (r *Registry) NewGauge(name, help string) *Gauge {
	return r.NewGaugeVec(name, help).With()
}

// NewGaugeVec registers a gauge family with the given label names.
func (r *Registry) NewGaugeVec(name, help string, labelNames ...string) *GaugeVec {
	v := &GaugeVec{newVec(r.newDesc(name, help, "gauge", labelNames), func() *Gauge { return new(Gauge) })}
	r.register(v, name)
	return v
}

// NewGaugeFunc registers a gauge without labels whose value fn returns at
// each scrape. fn must be safe to call concurrently and must not use the
// Registry.
func (r *Registry) NewGaugeFunc(name, help string, fn func() float64) {
	r.register(&funcFamily{r.newDesc(name, help, "gauge", nil), fn}, name)
}

// NewHistogram registers a histogram without labels and returns it. A nil
// buckets means DurationBuckets().
func (r *Registry) NewHistogram(name, help string, buckets []float64) *Histogram {
	return r.NewHistogramVec(name, help, buckets).With()
}

// NewHistogramVec registers a histogram family with the given upper bucket
// bounds (strictly increasing, finite; the +Inf bucket is implicit) and label
// names. A nil buckets means DurationBuckets(). "le" is not a valid label
// name here.
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labelNames ...string) *HistogramVec {
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
	upper := slices.Clone(buckets)
	d := r.newDesc(name, help, "histogram", labelNames)
	v := &HistogramVec{newVec(d, func() *Histogram { return newHistogram(upper) }), upper}
	r.register(v, name, name+"_bucket", name+"_sum", name+"_count")
	return v
}

// newDesc validates a family's name and label names.
func (r *Registry) newDesc(name, help, typ string, labels []string) *desc {
	if !validName(name, true) {
		panic(fmt.Sprintf("metrics: register %q: invalid metric name", name))
	}
	for i, l := range labels {
		if !validName(l, false) || strings.HasPrefix(l, "__") {
			panic(fmt.Sprintf("metrics: register %s: invalid label name %q", name, l))
		}
		if slices.Contains(labels[:i], l) {
			panic(fmt.Sprintf("metrics: register %s: duplicate label name %q", name, l))
		}
	}
	return &desc{name: name, help: help, typ: typ, labels: slices.Clone(labels)}
}

// register adds f, whose samples use the given names, to r.
func (r *Registry) register(f family, names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		if other, ok := r.taken[n]; ok {
			panic(fmt.Sprintf("metrics: register %s: name %s already used by %s", names[0], n, other))
		}
	}
	for _, n := range names {
		r.taken[n] = names[0]
	}
	r.families[names[0]] = f
}

// validName reports whether s is a valid metric name (colons allowed) or
// label name.
func validName(s string, metric bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case c == ':' && metric:
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// WriteTo writes all families in the text format 0.0.4, sorted by name, each
// family's series sorted by label values; families with no series yet are
// left out. It implements io.WriterTo.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(r.AppendText(nil))
	return int64(n), err
}

// AppendText appends what WriteTo writes to b and returns the result.
func (r *Registry) AppendText(b []byte) []byte {
	r.mu.RLock()
	fams := make([]family, 0, len(r.families))
	for _, f := range r.families {
		fams = append(fams, f)
	}
	r.mu.RUnlock()
	slices.SortFunc(fams, func(a, b family) int { return strings.Compare(a.describe().name, b.describe().name) })

	for _, f := range fams {
		d := f.describe()
		mark := len(b)
		b = append(b, "# HELP "...)
		b = append(b, d.name...)
		b = append(b, ' ')
		b = appendEscaped(b, d.help, false)
		b = append(b, "\n# TYPE "...)
		b = append(b, d.name...)
		b = append(b, ' ')
		b = append(b, d.typ...)
		b = append(b, '\n')
		body := len(b)
		b = f.appendTo(b)
		if len(b) == body {
			b = b[:mark] // no series: leave the family out
		}
	}
	return b
}

// ServeHTTP serves the exposition (GET /metrics).
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body := r.AppendText(nil)
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// funcFamily is a counter or gauge without labels read at scrape.
type funcFamily struct {
	*desc
	fn func() float64
}

func (f *funcFamily) appendTo(b []byte) []byte {
	return appendSample(b, f.name, "", nil, nil, "", f.fn())
}

// appendSeries appends the start of a sample line: name+suffix and the
// labels (with le when not empty), then the space before the value.
func appendSeries(b []byte, name, suffix string, labels, values []string, le string) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if len(labels) > 0 || le != "" {
		b = append(b, '{')
		for i, l := range labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, l...)
			b = append(b, `="`...)
			b = appendEscaped(b, values[i], true)
			b = append(b, '"')
		}
		if le != "" {
			if len(labels) > 0 {
				b = append(b, ',')
			}
			b = append(b, `le="`...)
			b = append(b, le...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, ' ')
}

// appendSample appends a whole sample line with a float value.
func appendSample(b []byte, name, suffix string, labels, values []string, le string, v float64) []byte {
	b = appendSeries(b, name, suffix, labels, values, le)
	b = appendFloat(b, v)
	return append(b, '\n')
}

// appendEscaped appends s escaped for the text format: backslash and newline
// always, the double quote in label values. Invalid UTF-8 becomes U+FFFD.
func appendEscaped(b []byte, s string, quote bool) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat appends v as the text format spells it: +Inf, -Inf, NaN, or
// the shortest decimal that reads back as v.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
