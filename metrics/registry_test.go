package metrics

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sample builds a small registry with every kind of family.
func sample() *Registry {
	r := NewRegistry()
	runs := r.NewCounterVec("andromeda_runs_total", "Runs by service and outcome.", "service", "outcome")
	runs.With("billing", "ok").Add(41)
	runs.With("billing", "ok").Inc()
	runs.With("billing", "error").Inc()
	runs.With("alerts", "timeout").Add(2.5)

	r.NewGauge("andromeda_services", "Deployed services.").Set(2)
	r.NewGaugeFunc("andromeda_uptime_seconds", "Seconds since the node started.", func() float64 { return 12.5 })
	r.NewCounterFunc("andromeda_ticks_missed_total", "Cron ticks missed.", func() float64 { return 3 })
	health := r.NewGaugeVec("andromeda_service_healthy", "1 if the service is healthy.", "service")
	health.With("billing").Set(1)
	health.With("alerts").Set(0)
	r.NewGaugeVec("andromeda_unused", "A family with no series is left out.", "service")

	dur := r.NewHistogramVec("andromeda_invocation_duration_seconds", "Invocation durations.", nil, "service")
	for _, d := range []time.Duration{80 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 2 * time.Second, 2 * time.Minute} {
		dur.With("billing").ObserveDuration(d)
	}
	dur.With("alerts").Observe(0.0001)
	small := r.NewHistogram("andromeda_output_bytes", "Output sizes.", []float64{1024, 65536, 1 << 20})
	small.Observe(10)
	small.Observe(1 << 30)

	r.NewCounterVec("andromeda_escapes_total", "Help with a back\\slash\nand a newline.", "value").
		With("quote \" back\\slash\nnewline").Inc()
	return r
}

func TestGolden(t *testing.T) {
	var buf bytes.Buffer
	n, err := sample().WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; want %d, nil", n, err, buf.Len())
	}
	golden := filepath.Join("testdata", "registry.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got := buf.String(); got != string(want) {
		t.Errorf("WriteTo output differs from %s (run go test -update if the change is intended):\n%s", golden, got)
	}
	if _, err := parseText(buf.String()); err != nil {
		t.Errorf("output does not parse: %v", err)
	}
}

func TestEscaping(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"plain", "billing", `x_total{v="billing"} 1`},
		{"quote", `say "hi"`, `x_total{v="say \"hi\""} 1`},
		{"backslash", `C:\dir`, `x_total{v="C:\\dir"} 1`},
		{"newline", "two\nlines", `x_total{v="two\nlines"} 1`},
		{"all", "\\\"\n", `x_total{v="\\\"\n"} 1`},
		{"empty", "", `x_total{v=""} 1`},
		{"unicode", "café ☕", `x_total{v="café ☕"} 1`},
		{"invalid utf-8", "a\xffb", `x_total{v="a` + "\uFFFD" + `b"} 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			r.NewCounterVec("x_total", "Help.", "v").With(tt.value).Inc()
			out := string(r.AppendText(nil))
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if got := lines[len(lines)-1]; got != tt.want {
				t.Errorf("sample line for %q = %s, want %s", tt.value, got, tt.want)
			}
			fams, err := parseText(out)
			if err != nil {
				t.Fatalf("output does not parse: %v\n%s", err, out)
			}
			if got := fams[0].samples[0].labels["v"]; got != strings.ToValidUTF8(tt.value, "\uFFFD") {
				t.Errorf("label value parsed back = %q, want %q", got, tt.value)
			}
		})
	}

	r := NewRegistry()
	r.NewGauge("g", "back\\slash \"quotes\" stay\nnewline").Set(1)
	if got, want := strings.SplitN(string(r.AppendText(nil)), "\n", 2)[0], `# HELP g back\\slash "quotes" stay\nnewline`; got != want {
		t.Errorf("HELP line = %s, want %s", got, want)
	}
}

func TestValues(t *testing.T) {
	r := NewRegistry()
	g := r.NewGaugeVec("g", "Help.", "v")
	for _, v := range []float64{0, 1, -1, 0.1, 1e-9, 1e21, 123456789, math.Inf(1), math.Inf(-1), math.NaN()} {
		g.With(strconv.FormatFloat(v, 'g', -1, 64)).Set(v)
	}
	fams, err := parseText(string(r.AppendText(nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range fams[0].samples {
		want, _ := strconv.ParseFloat(s.labels["v"], 64)
		if s.value != want && !(math.IsNaN(s.value) && math.IsNaN(want)) {
			t.Errorf("gauge %s read back as %v", s.labels["v"], s.value)
		}
	}

	c := r.NewCounter("c_total", "Help.")
	c.Add(0.5)
	c.Inc()
	c.Add(2)
	if got := c.Value(); got != 3.5 {
		t.Errorf("counter after Add(0.5), Inc, Add(2) = %v, want 3.5", got)
	}
	for _, bad := range []float64{-1, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Counter.Add(%v) did not panic", bad)
				}
			}()
			c.Add(bad)
		}()
	}

	h := r.NewHistogram("h", "Help.", []float64{1, 2})
	for _, v := range []float64{0.5, 1, 1.5, 2, 3, math.NaN()} {
		h.Observe(v)
	}
	want := []uint64{2, 2, 2} // le=1: 0.5, 1; le=2: 1.5, 2; +Inf: 3, NaN
	for i := range h.counts {
		if got := h.counts[i].Load(); got != want[i] {
			t.Errorf("bucket %d holds %d, want %d", i, got, want[i])
		}
	}
}

func TestVec(t *testing.T) {
	r := NewRegistry()
	v := r.NewCounterVec("x_total", "Help.", "a", "b")
	if v.With("1", "2") != v.With("1", "2") {
		t.Error("With returned different counters for the same labels")
	}
	// Length-prefixed keys: no two tuples collide.
	if v.With("ab", "c") == v.With("a", "bc") {
		t.Error("With(ab, c) and With(a, bc) share a counter")
	}
	v.With("1", "2").Inc()
	if !v.Delete("1", "2") || v.Delete("1", "2") || v.Delete("1") {
		t.Error("Delete reported wrongly")
	}
	if got := v.With("1", "2").Value(); got != 0 {
		t.Errorf("counter after Delete and With = %v, want a new one at 0", got)
	}
	v.Reset()
	if out := string(r.AppendText(nil)); out != "" {
		t.Errorf("output after Reset = %q, want empty", out)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("With with too few label values did not panic")
			}
		}()
		v.With("only one")
	}()
}

func TestRegisterPanics(t *testing.T) {
	tests := []struct {
		name string
		reg  func(r *Registry)
	}{
		{"duplicate", func(r *Registry) { r.NewGauge("x", ""); r.NewCounter("x", "") }},
		{"histogram suffix taken", func(r *Registry) { r.NewGauge("h_count", ""); r.NewHistogram("h", "", nil) }},
		{"taken by a histogram", func(r *Registry) { r.NewHistogram("h", "", nil); r.NewGauge("h_sum", "") }},
		{"bad name", func(r *Registry) { r.NewGauge("1x", "") }},
		{"empty name", func(r *Registry) { r.NewGauge("", "") }},
		{"bad label", func(r *Registry) { r.NewGaugeVec("x", "", "a-b") }},
		{"colon in label", func(r *Registry) { r.NewGaugeVec("x", "", "a:b") }},
		{"reserved label", func(r *Registry) { r.NewGaugeVec("x", "", "__name") }},
		{"duplicate label", func(r *Registry) { r.NewGaugeVec("x", "", "a", "a") }},
		{"le", func(r *Registry) { r.NewHistogramVec("x", "", nil, "le") }},
		{"unsorted buckets", func(r *Registry) { r.NewHistogram("x", "", []float64{2, 1}) }},
		{"infinite bucket", func(r *Registry) { r.NewHistogram("x", "", []float64{1, math.Inf(1)}) }},
		{"no buckets", func(r *Registry) { r.NewHistogram("x", "", []float64{}) }},
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
	NewRegistry().NewGauge("job:x:rate5m", "")
}

func TestServeHTTP(t *testing.T) {
	r := sample()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(method, "/metrics", nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ContentType {
			t.Errorf("%s /metrics = %d %q, want 200 %q", method, rec.Code, rec.Header().Get("Content-Type"), ContentType)
		}
		want := string(r.AppendText(nil))
		if method == http.MethodHead {
			want = ""
		}
		if rec.Body.String() != want {
			t.Errorf("%s /metrics body differs from AppendText", method)
		}
	}
}

// TestConcurrent updates, creates, deletes and scrapes at once (run with
// -race), then checks that no update was lost.
func TestConcurrent(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("c_total", "Help.", "g")
	g := r.NewGauge("g", "Help.")
	h := r.NewHistogramVec("h_seconds", "Help.", nil, "g")
	churn := r.NewGaugeVec("churn", "Help.", "i")
	const workers, n = 8, 2000
	var wg sync.WaitGroup
	done := make(chan struct{})
	var scrapes sync.WaitGroup
	scrapes.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := parseText(string(r.AppendText(nil))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			label := strconv.Itoa(w % 2)
			cc, hh := c.With(label), h.With(label)
			for i := range n {
				cc.Inc()
				c.With(label).Add(0.5)
				g.Add(1)
				hh.Observe(float64(i) / n)
				churn.With(strconv.Itoa(i % 10)).Set(float64(i))
				if i%100 == 0 {
					churn.Delete(strconv.Itoa(i % 10))
				}
			}
		})
	}
	wg.Wait()
	close(done)
	scrapes.Wait()

	total := c.With("0").Value() + c.With("1").Value()
	if want := float64(workers * n * 3 / 2); total != want {
		t.Errorf("counters sum to %v, want %v", total, want)
	}
	if got := g.Value(); got != workers*n {
		t.Errorf("gauge = %v, want %d", got, workers*n)
	}
	fams, err := parseText(string(r.AppendText(nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.name != "h_seconds" {
			continue
		}
		var count float64
		for _, s := range f.samples {
			if s.name == "h_seconds_count" {
				count += s.value
			}
		}
		if count != workers*n {
			t.Errorf("histogram counts sum to %v, want %d", count, workers*n)
		}
	}
}

func TestHotPathAllocs(t *testing.T) {
	r := NewRegistry()
	cv := r.NewCounterVec("c_total", "Help.", "service", "outcome")
	c := cv.With("billing", "ok")
	g := r.NewGauge("g", "Help.")
	h := r.NewHistogramVec("h_seconds", "Help.", nil, "service").With("billing")
	for name, f := range map[string]func(){
		"Counter.Inc":       c.Inc,
		"Counter.Add":       func() { c.Add(0.25) },
		"Gauge.Set":         func() { g.Set(3) },
		"Gauge.Add":         func() { g.Add(-1) },
		"Histogram.Observe": func() { h.Observe(0.003) },
		"CounterVec.With":   func() { cv.With("billing", "ok").Inc() },
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, a)
		}
	}
}

func BenchmarkCounterInc(b *testing.B) {
	c := NewRegistry().NewCounterVec("c_total", "Help.", "service").With("billing")
	b.ReportAllocs()
	for b.Loop() {
		c.Inc()
	}
}

func BenchmarkCounterIncParallel(b *testing.B) {
	c := NewRegistry().NewCounterVec("c_total", "Help.", "service").With("billing")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkCounterVecWith(b *testing.B) {
	cv := NewRegistry().NewCounterVec("c_total", "Help.", "service", "outcome")
	cv.With("billing", "ok")
	b.ReportAllocs()
	for b.Loop() {
		cv.With("billing", "ok").Inc()
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewRegistry().NewHistogramVec("h_seconds", "Help.", nil, "service").With("billing")
	b.ReportAllocs()
	v := 0.0
	for b.Loop() {
		h.Observe(v)
		v += 0.0001
	}
}

func BenchmarkHistogramObserveParallel(b *testing.B) {
	h := NewRegistry().NewHistogramVec("h_seconds", "Help.", nil, "service").With("billing")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe(0.003)
		}
	})
}

func BenchmarkWriteTo(b *testing.B) {
	r := NewRegistry()
	cv := r.NewCounterVec("c_total", "Help.", "service", "outcome")
	hv := r.NewHistogramVec("h_seconds", "Help.", nil, "service")
	for i := range 100 {
		cv.With(fmt.Sprint("svc", i), "ok").Inc()
		hv.With(fmt.Sprint("svc", i)).Observe(0.01)
	}
	b.ReportAllocs()
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if _, err := r.WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

// A small parser for the text format 0.0.4, strict enough to catch what a
// Prometheus server would reject or misread.

type parsedFamily struct {
	name, help, typ string
	samples         []parsedSample
}

type parsedSample struct {
	name   string
	labels map[string]string
	order  []string // label names in order
	value  float64
}

// parseText parses an exposition and checks the rules the format sets and
// this package promises: HELP and TYPE at most once per family and before its
// samples; sample names that belong to the family's type; families not
// interleaved and sorted by name; valid names and escapes; parseable
// values; histograms with non-decreasing cumulative buckets ending in +Inf,
// which equals _count.
func parseText(text string) ([]*parsedFamily, error) {
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("output does not end in a newline")
	}
	var fams []*parsedFamily
	byName := map[string]*parsedFamily{}
	cur := func() *parsedFamily {
		if len(fams) == 0 {
			return nil
		}
		return fams[len(fams)-1]
	}
	open := func(name string) (*parsedFamily, error) {
		if f := cur(); f != nil && f.name == name {
			return f, nil
		}
		if _, ok := byName[name]; ok {
			return nil, fmt.Errorf("family %s appears twice", name)
		}
		f := &parsedFamily{name: name}
		fams = append(fams, f)
		byName[name] = f
		return f, nil
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(format, args...))
		}
		switch {
		case line == "":
			return nil, fail("empty line")
		case strings.HasPrefix(line, "# HELP "), strings.HasPrefix(line, "# TYPE "):
			rest := line[len("# HELP "):]
			name, arg, ok := strings.Cut(rest, " ")
			if !ok || !validName(name, true) {
				return nil, fail("bad metric name")
			}
			f, err := open(name)
			if err != nil {
				return nil, fail("%v", err)
			}
			if len(f.samples) > 0 {
				return nil, fail("HELP or TYPE after samples")
			}
			if strings.HasPrefix(line, "# HELP ") {
				if f.help != "" {
					return nil, fail("second HELP")
				}
				if f.help, err = unescape(arg, false); err != nil {
					return nil, fail("%v", err)
				}
				continue
			}
			if f.typ != "" {
				return nil, fail("second TYPE")
			}
			switch arg {
			case "counter", "gauge", "histogram", "summary", "untyped":
				f.typ = arg
			default:
				return nil, fail("unknown type %q", arg)
			}
		case strings.HasPrefix(line, "#"):
			return nil, fail("unexpected comment")
		default:
			s, err := parseSample(line)
			if err != nil {
				return nil, fail("%v", err)
			}
			family := s.name
			if f := cur(); f != nil && f.typ == "histogram" {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if strings.TrimSuffix(s.name, suffix) == f.name {
						family = f.name
					}
				}
			}
			f, err := open(family)
			if err != nil {
				return nil, fail("%v", err)
			}
			if f.typ == "" {
				return nil, fail("sample before TYPE")
			}
			if f.typ == "histogram" && s.name == f.name {
				return nil, fail("histogram sample without suffix")
			}
			if _, ok := s.labels["le"]; ok != (s.name == f.name+"_bucket") {
				return nil, fail("le label on a sample that is not a bucket, or a bucket without it")
			}
			f.samples = append(f.samples, s)
		}
	}
	for i, f := range fams {
		if i > 0 && fams[i-1].name >= f.name {
			return nil, fmt.Errorf("families %s and %s are not sorted", fams[i-1].name, f.name)
		}
		for j := 1; j < len(f.samples); j++ {
			a, b := f.samples[j-1].values(), f.samples[j].values()
			if c := slices.Compare(a, b); c > 0 || c == 0 && f.typ != "histogram" {
				return nil, fmt.Errorf("family %s: series %q and %q are not sorted by label values", f.name, a, b)
			}
		}
		if f.typ == "histogram" {
			if err := checkHistogram(f); err != nil {
				return nil, fmt.Errorf("histogram %s: %w", f.name, err)
			}
		}
	}
	return fams, nil
}

// values returns the sample's label values in order, without le.
func (s parsedSample) values() []string {
	var out []string
	for _, name := range s.order {
		if name != "le" {
			out = append(out, s.labels[name])
		}
	}
	return out
}

// parseSample parses name{labels} value [timestamp].
func parseSample(line string) (parsedSample, error) {
	s := parsedSample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end < 0 {
		return s, fmt.Errorf("no value")
	}
	s.name, line = line[:end], line[end:]
	if !validName(s.name, true) {
		return s, fmt.Errorf("bad metric name %q", s.name)
	}
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for !strings.HasPrefix(line, "}") {
			name, rest, ok := strings.Cut(line, `="`)
			if !ok || !validName(name, false) {
				return s, fmt.Errorf("bad label name in %q", line)
			}
			if _, dup := s.labels[name]; dup {
				return s, fmt.Errorf("duplicate label %s", name)
			}
			var raw strings.Builder
			for {
				if rest == "" {
					return s, fmt.Errorf("unterminated label value")
				}
				c := rest[0]
				if c == '"' {
					rest = rest[1:]
					break
				}
				if c == '\\' && len(rest) > 1 {
					raw.WriteString(rest[:2])
					rest = rest[2:]
					continue
				}
				raw.WriteByte(c)
				rest = rest[1:]
			}
			v, err := unescape(raw.String(), true)
			if err != nil {
				return s, err
			}
			s.labels[name] = v
			s.order = append(s.order, name)
			line = strings.TrimPrefix(rest, ",")
		}
		line = line[1:]
	}
	fields := strings.Fields(line)
	if len(fields) < 1 || len(fields) > 2 || !strings.HasPrefix(line, " ") {
		return s, fmt.Errorf("want a value and an optional timestamp after the labels")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	s.value = v
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, fmt.Errorf("timestamp: %w", err)
		}
	}
	return s, nil
}

// unescape undoes the format's escapes: \\ and \n, and \" in label values.
func unescape(s string, quoted bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || c == '"' && quoted {
			return "", fmt.Errorf("unescaped %q in %q", c, s)
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(s) {
			if quoted {
				return "", fmt.Errorf("dangling backslash in %q", s)
			}
			b.WriteByte(c) // HELP: a lone backslash at the end is literal
			continue
		}
		i++
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case '"':
			if !quoted {
				return "", fmt.Errorf(`\" in HELP %q`, s)
			}
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("unknown escape \\%c in %q", s[i], s)
		}
	}
	return b.String(), nil
}

// checkHistogram checks each series of a histogram family: buckets with
// increasing le, non-decreasing counts, a last +Inf bucket equal to _count,
// and a _sum.
func checkHistogram(f *parsedFamily) error {
	type series struct {
		les      []float64
		counts   []float64
		sum, cnt bool
		count    float64
	}
	all := map[string]*series{}
	for _, s := range f.samples {
		var parts []string
		for _, name := range s.order {
			if name != "le" {
				parts = append(parts, name+"="+s.labels[name])
			}
		}
		key := strings.Join(parts, ",")
		se, ok := all[key]
		if !ok {
			se = &series{}
			all[key] = se
		}
		switch s.name {
		case f.name + "_bucket":
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err != nil {
				return fmt.Errorf("le %q: %w", s.labels["le"], err)
			}
			if n := len(se.les); n > 0 && (le <= se.les[n-1] || s.value < se.counts[n-1]) {
				return fmt.Errorf("series {%s}: bucket le=%v out of order or decreasing", key, le)
			}
			se.les = append(se.les, le)
			se.counts = append(se.counts, s.value)
		case f.name + "_sum":
			se.sum = true
		case f.name + "_count":
			se.cnt, se.count = true, s.value
		}
	}
	for key, se := range all {
		n := len(se.les)
		if n == 0 || !math.IsInf(se.les[n-1], 1) || !se.sum || !se.cnt || se.counts[n-1] != se.count {
			return fmt.Errorf("series {%s}: want buckets ending in +Inf equal to _count, and _sum", key)
		}
	}
	return nil
}
