package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/andromeda-runner/andromeda/metrics"
)

// The service label values that stand for several services (see
// MetricsConfig.ServiceLabels). Service names never start with "_".
const (
	operatorServices  = "_operator"
	submitterServices = "_submitter"
)

// operatorOwner is the owner of the services the operator submitted: the
// name the operator token authenticates as.
const operatorOwner = "operator"

// nodeMetrics are the node's Prometheus series. The work gate registers
// its own (workGate.register).
type nodeMetrics struct {
	reg         *metrics.Registry // served by Node.Metrics
	invocations *prometheus.CounterVec
	executions  *prometheus.CounterVec
	flowRuns    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lag         *prometheus.HistogramVec
	labels      string                   // service_labels: all, operator or none
	owner       func(name string) string // a deployed service's owner; "" when unknown
}

func newNodeMetrics(n *Node) *nodeMetrics {
	reg := metrics.NewRegistry()
	m := &nodeMetrics{
		reg:    reg,
		labels: n.cfg.HTTP.serviceLabels(),
		owner: func(name string) string {
			if d := n.lookup(name); d != nil {
				return d.rec.Owner
			}
			return ""
		},
		invocations: reg.NewCounterVec("andromeda_invocations_total", "Invocations by service and outcome (ok, noop, error, timeout, crashed, oom, rejected, skipped, cancelled).", "service", "outcome"),
		executions:  reg.NewCounterVec("andromeda_executions_total", "Attempts at executing actions that ended, by action kind and what became of the execution (confirmed, retry, failed).", "kind", "state"),
		flowRuns:    reg.NewCounterVec("andromeda_flow_runs_total", "Flow runs recorded, by flow and outcome (ok, failed).", "flow", "outcome"),
		duration:    reg.NewHistogramVec("andromeda_invocation_duration_seconds", "Wall time of invocations by service, from trigger to recorded run.", nil, "service"),
		lag: reg.NewHistogramVec("andromeda_trigger_lag_seconds", "How late runs start after what triggered them, by trigger kind: a cron run after its tick's time, an event's run after the event was stored.",
			[]float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}, "kind"),
	}
	failed := reg.NewCounterVec("andromeda_store_gauges_failed_total", "Reads of the store sizes and flow queue depths for a scrape that failed (the last values read are reported).")
	reg.MustRegister(newStoreGauges(n, failed.WithLabelValues()))
	reg.NewGaugeFunc("andromeda_services", "Services deployed on this node.", func() float64 {
		n.mu.RLock()
		defer n.mu.RUnlock()
		return float64(len(n.services))
	})
	reg.NewGaugeFunc("andromeda_services_unhealthy", "Deployed services currently unhealthy.", func() float64 {
		n.mu.RLock()
		defer n.mu.RUnlock()
		c := 0
		for _, d := range n.services {
			if !d.health.State().Healthy {
				c++
			}
		}
		return float64(c)
	})
	reg.NewCounterFunc("andromeda_prewarms_total", "Cron ticks prepared ahead (lifecycle.prewarm): a worker started or a dormant service deployed before the tick.", func() float64 {
		return float64(n.prewarms.Load())
	})
	return m
}

// executed counts an attempt at an execution that ended in state.
func (m *nodeMetrics) executed(kind, state string) {
	if m == nil {
		return
	}
	m.executions.WithLabelValues(kind, state).Inc()
}

// observeLag records how late a run of kind started after what triggered
// it.
func (m *nodeMetrics) observeLag(kind string, d time.Duration) {
	if m == nil || d < 0 {
		return
	}
	m.lag.WithLabelValues(kind).Observe(d.Seconds())
}

// observeFlowRun counts a recorded flow run.
func (m *nodeMetrics) observeFlowRun(flow, outcome string) {
	if m == nil {
		return
	}
	m.flowRuns.WithLabelValues(flow, outcome).Inc()
}

func (m *nodeMetrics) observe(service, outcome string, d time.Duration) {
	label := m.label(service)
	m.invocations.WithLabelValues(label, outcome).Inc()
	m.duration.WithLabelValues(label).Observe(d.Seconds())
}

// label is the service label a service's series carry: its name, or the
// aggregate it is counted under. A service whose owner is unknown (removed
// while a run finished) counts as a submitter's.
func (m *nodeMetrics) label(service string) string {
	if m.labels == serviceLabelsAll {
		return service
	}
	op := m.owner(service) == operatorOwner
	switch {
	case op && m.labels == serviceLabelsOperator:
		return service
	case op:
		return operatorServices
	}
	return submitterServices
}

// forget drops a removed service's own series; the aggregates stay.
func (m *nodeMetrics) forget(service string) {
	m.invocations.DeletePartialMatch(prometheus.Labels{"service": service})
	m.duration.DeleteLabelValues(service)
}
