package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// TestMetricsExposure: by default /metrics is open and names only the
// operator's services, a submitter's being counted under "_submitter"; with
// access token and service_labels all it needs an operator token and names
// every service, until the service is removed. Submitters do not see the
// data dir in /v1/node.
func TestMetricsExposure(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		metrics  node.MetricsConfig
		anon     int    // GET /metrics without a token
		opLabel  string // the service label of the operator's greeter
		subLabel string // the service label of alice's hello
	}{
		{"default", node.MetricsConfig{}, 200, "greeter", "_submitter"},
		{"token, all", node.MetricsConfig{Access: "token", ServiceLabels: "all"}, 401, "greeter", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, func(c *node.Config) { c.HTTP.Metrics = tc.metrics })
			if _, err := n.op.Submit(ctx, pack(t, example(t, "greeter"))); err != nil {
				t.Fatal(err)
			}
			tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
			if err != nil {
				t.Fatal(err)
			}
			alice := api.NewClient(n.Addr(), tok.Secret)
			dir := example(t, "greeter")
			m, _ := os.ReadFile(filepath.Join(dir, "andromeda.yaml"))
			os.WriteFile(filepath.Join(dir, "andromeda.yaml"), bytes.Replace(m, []byte("name: greeter"), []byte("name: hello"), 1), 0o644)
			if _, err := alice.Submit(ctx, pack(t, dir)); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"greeter", "hello"} {
				if _, err := n.op.Fire(ctx, s, json.RawMessage(`{"name":"x"}`)); err != nil {
					t.Fatal(err)
				}
			}

			get := func(token string) (int, string) {
				req, _ := http.NewRequest("GET", n.URL()+"/metrics", nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body)
			}
			if code, _ := get(""); code != tc.anon {
				t.Fatalf("GET /metrics without a token = %d, want %d", code, tc.anon)
			}
			if tc.anon != 200 {
				if code, _ := get(tok.Secret); code != 403 {
					t.Fatalf("GET /metrics with a submitter token = %d, want 403", code)
				}
			}
			opToken, _ := node.OperatorToken(n.cfg.Data)
			code, body := get(opToken)
			if code != 200 {
				t.Fatalf("GET /metrics with the operator token = %d", code)
			}
			fams := parseMetrics(t, body)
			for _, service := range []string{tc.opLabel, tc.subLabel} {
				labels := map[string]string{"service": service, "outcome": "ok"}
				if got, ok := value(fams, "andromeda_invocations_total", labels); got != 1 {
					t.Errorf("andromeda_invocations_total%v = %v (present %v), want 1:\n%s", labels, got, ok, body)
				}
			}
			if tc.subLabel == "_submitter" && strings.Contains(body, "hello") {
				t.Errorf("metrics name the submitter's service:\n%s", body)
			}

			// Removing a service drops the series named after it; an
			// aggregate it was counted under stays.
			if err := n.op.Remove(ctx, "hello"); err != nil {
				t.Fatal(err)
			}
			_, body = get(opToken)
			fams = parseMetrics(t, body)
			for _, series := range []struct {
				family, service string
			}{
				{"andromeda_invocations_total", tc.opLabel},
				{"andromeda_invocation_duration_seconds", tc.opLabel},
				{"andromeda_invocations_total", tc.subLabel},
				{"andromeda_invocation_duration_seconds", tc.subLabel},
			} {
				labels := map[string]string{"service": series.service}
				if series.family == "andromeda_invocations_total" {
					labels["outcome"] = "ok"
				}
				_, ok := value(fams, series.family, labels)
				if want := series.service != "hello"; ok != want {
					t.Errorf("after removing hello: %s%v present %v, want %v", series.family, labels, ok, want)
				}
			}

			info, err := alice.Node(ctx)
			if err != nil || info.Data != "" {
				t.Errorf("submitter's /v1/node: data_dir %q, %v; want it hidden", info.Data, err)
			}
			if info, err := n.op.Node(ctx); err != nil || info.Data != n.cfg.Data {
				t.Errorf("operator's /v1/node: data_dir %q, %v; want %q", info.Data, err, n.cfg.Data)
			}
		})
	}
}

// TestMetricsScrape scrapes a real node after one invocation.
func TestMetricsScrape(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	if _, err := n.op.Submit(ctx, pack(t, example(t, "greeter"))); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"x"}`)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
	}
	body := string(raw)
	fams := parseMetrics(t, body)

	// Every family the node has served keeps its name, type, help and
	// labels: dashboards and alerts use them.
	t.Run("families", func(t *testing.T) {
		for _, want := range []struct {
			name   string
			typ    dto.MetricType
			help   string
			labels []string
		}{
			{"andromeda_invocations_total", dto.MetricType_COUNTER, "Invocations by service and outcome (ok, noop, error, timeout, crashed, oom, rejected, skipped, cancelled).", []string{"outcome", "service"}},
			{"andromeda_invocation_duration_seconds", dto.MetricType_HISTOGRAM, "Wall time of invocations by service, from trigger to recorded run.", []string{"service"}},
			{"andromeda_services", dto.MetricType_GAUGE, "Services deployed on this node.", nil},
			{"andromeda_services_unhealthy", dto.MetricType_GAUGE, "Deployed services currently unhealthy.", nil},
			{"andromeda_fires_refused_total", dto.MetricType_COUNTER, "Fires answered 503 because the data disk was nearly full or the store could not write.", nil},
			{"andromeda_ticks_dropped_total", dto.MetricType_COUNTER, "Cron ticks dropped, recording nothing, because the data disk was nearly full or the store could not write.", nil},
			{"andromeda_store_available", dto.MetricType_GAUGE, "1 while new work is accepted: the data disk has room and the store can write; 0 otherwise.", nil},
			{"andromeda_disk_free_bytes", dto.MetricType_GAUGE, "Free bytes on the data directory's filesystem, measured every disk.interval.", nil},
		} {
			f, ok := fams[want.name]
			if !ok {
				t.Errorf("/metrics lacks %s", want.name)
				continue
			}
			if f.GetType() != want.typ || f.GetHelp() != want.help {
				t.Errorf("%s: %v %q, want %v %q", want.name, f.GetType(), f.GetHelp(), want.typ, want.help)
			}
			for _, m := range f.GetMetric() {
				var got []string
				for _, l := range m.GetLabel() {
					got = append(got, l.GetName())
				}
				if !slices.Equal(got, want.labels) {
					t.Errorf("%s: labels %q, want %q", want.name, got, want.labels)
				}
			}
		}
		if got, _ := value(fams, "andromeda_services", nil); got != 1 {
			t.Errorf("andromeda_services = %v, want 1", got)
		}
		if got, _ := value(fams, "andromeda_store_available", nil); got != 1 {
			t.Errorf("andromeda_store_available = %v, want 1", got)
		}
		h := fams["andromeda_invocation_duration_seconds"].GetMetric()[0].GetHistogram()
		var upper []float64
		for _, b := range h.GetBucket() {
			upper = append(upper, b.GetUpperBound())
		}
		want := []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, math.Inf(1)}
		if !slices.Equal(upper, want) || h.GetSampleCount() != 1 {
			t.Errorf("duration histogram: buckets %v, count %d; want %v, 1", upper, h.GetSampleCount(), want)
		}
	})

	// The Go runtime and process collectors are registered.
	t.Run("runtime", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "go_gc_duration_seconds", "process_resident_memory_bytes", "process_open_fds"} {
			if got, ok := value(fams, name, nil); !ok {
				t.Errorf("/metrics lacks %s", name)
			} else if name == "go_goroutines" && got < 1 {
				t.Errorf("go_goroutines = %v", got)
			}
		}
	})

	// promtool, Prometheus's own checker, accepts the exposition: format
	// and naming conventions.
	t.Run("promtool", func(t *testing.T) {
		promtool, err := exec.LookPath("promtool")
		sandboxtest.Require(t, err == nil, "promtool (Debian package prometheus) is needed to check /metrics")
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s\n/metrics:\n%s", err, out, body)
		}
	})
}

// parseMetrics parses a text exposition by family name.
func parseMetrics(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// value is the value of family's counter or gauge series with exactly the
// given labels, and whether there is one. For a summary or histogram it is
// the sample count.
func value(fams map[string]*dto.MetricFamily, family string, labels map[string]string) (float64, bool) {
	for _, m := range fams[family].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount()), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// TestMetricsOperatorFamilies: the families operators graph beside the
// runs: how late cron runs start after their tick, the size of every
// JetStream stream, the depth of each running flow's queue; promtool
// still accepts the whole exposition.
func TestMetricsOperatorFamilies(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	if _, err := n.op.Submit(ctx, pack(t, heartbeatEvery(t, ""))); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ma", "mb", "mc"} {
		if _, err := n.op.Submit(ctx, clusterMirror(t, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.op.ApplyFlow(ctx, "application/yaml", []byte(spanFlow), false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.StartFlow(ctx, "span"); err != nil {
		t.Fatal(err)
	}
	// A flow run (andromeda_flow_runs_total), and five beats: the fifth
	// asks for a log action, executed (andromeda_executions_total).
	if _, err := n.op.FireFlow(ctx, "span", api.FlowFireRequest{Message: spanMessage(1), Wait: "30s"}); err != nil {
		t.Fatal(err)
	}
	waitRunCount(t, n, "heartbeat", 5)
	waitExecuted(t, n)
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	body := string(raw)
	fams := parseMetrics(t, body)
	for name, typ := range map[string]dto.MetricType{
		"andromeda_trigger_lag_seconds":         dto.MetricType_HISTOGRAM,
		"andromeda_store_stream_bytes":          dto.MetricType_GAUGE,
		"andromeda_store_stream_messages":       dto.MetricType_GAUGE,
		"andromeda_flow_queue_depth":            dto.MetricType_GAUGE,
		"andromeda_store_gauges_age_seconds":    dto.MetricType_GAUGE,
		"andromeda_store_gauges_failed_total":   dto.MetricType_COUNTER,
		"andromeda_invocation_duration_seconds": dto.MetricType_HISTOGRAM,
	} {
		if f, ok := fams[name]; !ok || f.GetType() != typ {
			t.Errorf("%s: %v (found %v), want a %v", name, f.GetType(), ok, typ)
		}
	}
	var lag *dto.Histogram
	for _, m := range fams["andromeda_trigger_lag_seconds"].GetMetric() {
		if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "cron" {
			lag = m.GetHistogram()
		}
	}
	if lag == nil || lag.GetSampleCount() < 2 || lag.GetSampleSum() < 0 || lag.GetSampleSum() > float64(lag.GetSampleCount())*5 {
		t.Errorf("andromeda_trigger_lag_seconds{kind=cron} = %v; want the heartbeat's ticks, each late by less than 5 s", lag)
	}
	streams := 0
	for _, m := range fams["andromeda_store_stream_messages"].GetMetric() {
		if m.GetGauge().GetValue() > 0 {
			streams++
		}
	}
	if streams < 3 {
		t.Errorf("%d streams hold messages, want the runs, services and more:\n%v", streams, fams["andromeda_store_stream_messages"])
	}
	if _, ok := value(fams, "andromeda_flow_queue_depth", map[string]string{"flow": "span"}); !ok {
		t.Errorf("no queue depth for the running flow span: %v", fams["andromeda_flow_queue_depth"])
	}
	if age, ok := value(fams, "andromeda_store_gauges_age_seconds", nil); !ok || age > 5 {
		t.Errorf("andromeda_store_gauges_age_seconds = %v, %v", age, ok)
	}
	// The Grafana dashboard in docs/ graphs only what the node serves.
	dash, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "andromeda-node.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dash, &d); err != nil || len(d.Panels) < 8 {
		t.Fatalf("the dashboard: %d panels, %v", len(d.Panels), err)
	}
	name := regexp.MustCompile(`\b(?:andromeda|go|process)_[a-z_]+\b`)
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			for _, m := range name.FindAllString(q.Expr, -1) {
				fam := m
				if _, ok := fams[fam]; !ok {
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						if base, cut := strings.CutSuffix(m, suffix); cut && fams[base].GetType() == dto.MetricType_HISTOGRAM {
							fam = base
						}
					}
				}
				if _, ok := fams[fam]; !ok {
					t.Errorf("panel %q queries %s, which the node does not serve", p.Title, m)
				}
			}
		}
	}
	promtool, err := exec.LookPath("promtool")
	sandboxtest.Require(t, err == nil, "promtool (Debian package prometheus) is needed to check /metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// waitExecuted waits until n has executed an action and counted it in
// andromeda_executions_total (10 s).
func waitExecuted(t *testing.T, n *testNode) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(n.URL() + "/metrics")
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(raw), "\nandromeda_executions_total{") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no action of the heartbeat executed in 10 s")
		}
	}
}
