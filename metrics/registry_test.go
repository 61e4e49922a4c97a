package metrics

import (
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/andromeda-runner/andromeda/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sample builds a registry with a family from every constructor.
func sample() *Registry {
	r := NewRegistry()
	runs := r.NewCounterVec("andromeda_runs_total", "Runs by service and outcome.", "service", "outcome")
	runs.WithLabelValues("billing", "ok").Add(41)
	runs.WithLabelValues("billing", "ok").Inc()
	runs.WithLabelValues("billing", "error").Inc()
	runs.WithLabelValues("alerts", "timeout").Add(2.5)
	r.NewCounterVec("andromeda_unused_total", "A family with no series is left out.", "service")

	r.NewGaugeFunc("andromeda_uptime_seconds", "Seconds since the node started.", func() float64 { return 12.5 })
	r.NewCounterFunc("andromeda_ticks_missed_total", "Cron ticks missed.", func() float64 { return 3 })

	dur := r.NewHistogramVec("andromeda_invocation_duration_seconds", "Invocation durations.", nil, "service")
	for _, d := range []time.Duration{80 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 2 * time.Second, 2 * time.Minute} {
		dur.WithLabelValues("billing").Observe(d.Seconds())
	}
	dur.WithLabelValues("alerts").Observe(0.0001)
	small := r.NewHistogramVec("andromeda_output_bytes", "Output sizes.", []float64{1024, 65536, 1 << 20})
	small.WithLabelValues().Observe(10)
	small.WithLabelValues().Observe(1 << 30)
	return r
}

// scrape serves GET /metrics from h with the given Accept header.
func scrape(t testing.TB, h http.Handler, accept string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", rec.Code, rec.Body)
	}
	return rec
}

// TestGolden pins the text exposition of the families the constructors
// make, the duration buckets included; the runtime and process families,
// whose values change from run to run, are left out.
func TestGolden(t *testing.T) {
	var own strings.Builder
	keep := false
	for line := range strings.Lines(scrape(t, sample(), "").Body.String()) {
		if strings.HasPrefix(line, "# HELP ") {
			keep = strings.HasPrefix(line, "# HELP andromeda_")
		}
		if keep {
			own.WriteString(line)
		}
	}
	golden.Check(t, filepath.Join("testdata", "registry.golden"), []byte(own.String()), *update, "go test ./metrics -update")
}

// TestServeHTTP: the text format by default, with the runtime and process
// collectors' families; the protobuf format to a scraper that asks for it.
func TestServeHTTP(t *testing.T) {
	r := sample()
	rec := scrape(t, r, "")
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4; charset=utf-8") {
		t.Errorf("Content-Type = %q, want the text format 0.0.4", ct)
	}
	for _, family := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if !strings.Contains(rec.Body.String(), "\n# TYPE "+family+" ") {
			t.Errorf("exposition lacks %s", family)
		}
	}
	rec = scrape(t, r, "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/vnd.google.protobuf") {
		t.Errorf("Content-Type with a protobuf Accept = %q", ct)
	}
}

// TestRegisterPanics: families are declared by code, so a bad or taken
// name is a programming error.
func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		reg  func(r *Registry)
	}{
		{"duplicate", func(r *Registry) { r.NewGaugeFunc("x", "", nil); r.NewCounterFunc("x", "", nil) }},
		{"taken by a collector", func(r *Registry) { r.NewGaugeFunc("go_goroutines", "", nil) }},
		{"bad name", func(r *Registry) { r.NewGaugeFunc("1x", "", nil) }},
		{"empty name", func(r *Registry) { r.NewCounterVec("", "") }},
		{"dash in name", func(r *Registry) { r.NewCounterVec("a-b", "") }},
		{"reserved label", func(r *Registry) { r.NewCounterVec("x", "", "__name") }},
		{"duplicate label", func(r *Registry) { r.NewCounterVec("x", "", "a", "a") }},
		{"le", func(r *Registry) { r.NewHistogramVec("x", "", nil, "le") }},
		{"dash in label", func(r *Registry) { r.NewCounterVec("x", "", "a-b") }},
		{"colon in label", func(r *Registry) { r.NewCounterVec("x", "", "a:b") }},
		{"unsorted buckets", func(r *Registry) { r.NewHistogramVec("x", "", []float64{2, 1}) }},
		{"infinite bucket", func(r *Registry) { r.NewHistogramVec("x", "", []float64{1, math.Inf(1)}) }},
		{"no buckets", func(r *Registry) { r.NewHistogramVec("x", "", []float64{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("registration did not panic")
				}
			}()
			tt.reg(NewRegistry())
		})
	}
	// Colons are fine in metric names.
	NewRegistry().NewGaugeFunc("job:x:rate5m", "", func() float64 { return 0 })
}

// TestDurationBuckets: strictly increasing from 50µs to 60s, and a new
// slice each call.
func TestDurationBuckets(t *testing.T) {
	b := DurationBuckets()
	if b[0] != 0.00005 || b[len(b)-1] != 60 || len(b) != 19 {
		t.Errorf("DurationBuckets() = %v, want 19 buckets from 5e-05 to 60", b)
	}
	for i := 1; i < len(b); i++ {
		if !(b[i] > b[i-1]) || math.IsInf(b[i], 0) {
			t.Errorf("DurationBuckets()[%d] = %v after %v", i, b[i], b[i-1])
		}
	}
	b[0] = 1
	if DurationBuckets()[0] != 0.00005 {
		t.Error("DurationBuckets returned a shared slice")
	}
}

// TestHotPathAllocs: counting an invocation, as the node does for every
// run, does not allocate once the series exist.
func TestHotPathAllocs(t *testing.T) {
	r := NewRegistry()
	cv := r.NewCounterVec("c_total", "Help.", "service", "outcome")
	hv := r.NewHistogramVec("h_seconds", "Help.", nil, "service")
	c, h := cv.WithLabelValues("billing", "ok"), hv.WithLabelValues("billing")
	for name, f := range map[string]func(){
		"Counter.Inc":                    c.Inc,
		"Observer.Observe":               func() { h.Observe(0.003) },
		"CounterVec.WithLabelValues":     func() { cv.WithLabelValues("billing", "ok").Inc() },
		"HistogramVec.WithLabelValues":   func() { hv.WithLabelValues("billing").Observe(0.003) },
		"CounterVec.DeletePartialMatch":  func() { cv.DeletePartialMatch(prometheus.Labels{"service": "gone"}) },
		"HistogramVec.DeleteLabelValues": func() { hv.DeleteLabelValues("gone") },
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, a)
		}
	}
}

// TestConcurrent: eight goroutines count invocations, as the node does for
// concurrent runs, while others delete a series and scrape. Every scrape
// is well formed, counters never go back from one scrape to the next, and
// each histogram is consistent in itself; at the end the exposition is
// byte for byte that of the same operations done one after another.
func TestConcurrent(t *testing.T) {
	const workers, per = 8, 2000
	// Observations are multiples of 1/8 s, so float sums are exact in any
	// order and the serial reference can be compared byte for byte.
	work := func(cv *prometheus.CounterVec, hv *prometheus.HistogramVec, w, i int) {
		service := fmt.Sprint("svc", w%2)
		countInvocation(cv, hv, service, "ok", time.Duration(i%8)*time.Second/8)
		if i%100 == 0 {
			// A removed service's series go; the live ones stay.
			cv.WithLabelValues("gone", "ok").Inc()
			cv.DeletePartialMatch(prometheus.Labels{"service": "gone"})
		}
	}
	own := func(r *Registry) string {
		var b strings.Builder
		for line := range strings.Lines(scrape(t, r, "").Body.String()) {
			if strings.HasPrefix(line, "c_total") || strings.HasPrefix(line, "h_seconds") {
				b.WriteString(line)
			}
		}
		return b.String()
	}

	r := NewRegistry()
	cv := r.NewCounterVec("c_total", "Help.", "service", "outcome")
	hv := r.NewHistogramVec("h_seconds", "Help.", nil, "service")
	var workersDone, scrapers sync.WaitGroup
	done := make(chan struct{})
	for range 2 {
		scrapers.Go(func() {
			last := 0.0
			for {
				select {
				case <-done:
					return
				default:
				}
				p := expfmt.NewTextParser(model.LegacyValidation)
				fams, err := p.TextToMetricFamilies(strings.NewReader(scrape(t, r, "").Body.String()))
				if err != nil {
					t.Errorf("a scrape during the counting does not parse: %v", err)
					return
				}
				total := 0.0
				for _, m := range fams["c_total"].GetMetric() {
					if m.GetLabel()[1].GetValue() != "gone" {
						total += m.GetCounter().GetValue()
					}
				}
				if total < last {
					t.Errorf("c_total went back from %v to %v between two scrapes", last, total)
					return
				}
				last = total
				for _, m := range fams["h_seconds"].GetMetric() {
					h, prev := m.GetHistogram(), uint64(0)
					for _, b := range h.GetBucket() {
						if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > h.GetSampleCount() {
							t.Errorf("h_seconds buckets are not cumulative within the count %d: %v", h.GetSampleCount(), h.GetBucket())
							return
						}
						prev = b.GetCumulativeCount()
					}
				}
			}
		})
	}
	for w := range workers {
		workersDone.Go(func() {
			for i := range per {
				work(cv, hv, w, i)
			}
		})
	}
	workersDone.Wait()
	close(done)
	scrapers.Wait()

	ref := NewRegistry()
	rcv := ref.NewCounterVec("c_total", "Help.", "service", "outcome")
	rhv := ref.NewHistogramVec("h_seconds", "Help.", nil, "service")
	for w := range workers {
		for i := range per {
			work(rcv, rhv, w, i)
		}
	}
	got, want := own(r), own(ref)
	if got != want {
		t.Errorf("after %d concurrent invocations the exposition is\n%s\nwant, as counted one after another:\n%s", workers*per, got, want)
	}
	if line := fmt.Sprintf("c_total{outcome=\"ok\",service=\"svc0\"} %d\n", workers/2*per); !strings.Contains(got, line) {
		t.Errorf("exposition lacks %q", line)
	}
}

// countInvocation is what the node does for every run it records.
func countInvocation(cv *prometheus.CounterVec, hv *prometheus.HistogramVec, service, outcome string, d time.Duration) {
	cv.WithLabelValues(service, outcome).Inc()
	hv.WithLabelValues(service).Observe(d.Seconds())
}

func BenchmarkCountInvocation(b *testing.B) {
	r := NewRegistry()
	cv := r.NewCounterVec("c_total", "Help.", "service", "outcome")
	hv := r.NewHistogramVec("h_seconds", "Help.", nil, "service")
	b.ReportAllocs()
	for b.Loop() {
		countInvocation(cv, hv, "billing", "ok", 3*time.Millisecond)
	}
}

func BenchmarkCountInvocationParallel(b *testing.B) {
	r := NewRegistry()
	cv := r.NewCounterVec("c_total", "Help.", "service", "outcome")
	hv := r.NewHistogramVec("h_seconds", "Help.", nil, "service")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			countInvocation(cv, hv, "billing", "ok", 3*time.Millisecond)
		}
	})
}

func BenchmarkCounterInc(b *testing.B) {
	c := NewRegistry().NewCounterVec("c_total", "Help.", "service").WithLabelValues("billing")
	b.ReportAllocs()
	for b.Loop() {
		c.Inc()
	}
}

func BenchmarkCounterIncParallel(b *testing.B) {
	c := NewRegistry().NewCounterVec("c_total", "Help.", "service").WithLabelValues("billing")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkCounterVecWith(b *testing.B) {
	cv := NewRegistry().NewCounterVec("c_total", "Help.", "service", "outcome")
	cv.WithLabelValues("billing", "ok")
	b.ReportAllocs()
	for b.Loop() {
		cv.WithLabelValues("billing", "ok").Inc()
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewRegistry().NewHistogramVec("h_seconds", "Help.", nil, "service").WithLabelValues("billing")
	b.ReportAllocs()
	v := 0.0
	for b.Loop() {
		h.Observe(v)
		v += 0.0001
	}
}

func BenchmarkHistogramObserveParallel(b *testing.B) {
	h := NewRegistry().NewHistogramVec("h_seconds", "Help.", nil, "service").WithLabelValues("billing")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe(0.003)
		}
	})
}

// BenchmarkScrape serves /metrics with 100 services' counters and
// histograms: "families" alone (what the hand-written WriteTo measured),
// and "runtime" with the Go runtime and process collectors, as a node
// serves it.
func BenchmarkScrape(b *testing.B) {
	for _, tc := range []struct {
		name string
		reg  *Registry
	}{
		{"families", &Registry{Registry: prometheus.NewRegistry()}},
		{"runtime", NewRegistry()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := tc.reg
			if r.handler == nil {
				r.handler = promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{})
			}
			cv := r.NewCounterVec("c_total", "Help.", "service", "outcome")
			hv := r.NewHistogramVec("h_seconds", "Help.", nil, "service")
			for i := range 100 {
				cv.WithLabelValues(fmt.Sprint("svc", i), "ok").Inc()
				hv.WithLabelValues(fmt.Sprint("svc", i)).Observe(0.01)
			}
			b.ReportAllocs()
			var n int
			for b.Loop() {
				n = scrape(b, r, "").Body.Len()
			}
			b.SetBytes(int64(n))
		})
	}
}
