package node

import (
	"time"

	"github.com/andromeda-runner/andromeda/metrics"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// nodeMetrics are the node's Prometheus series.
type nodeMetrics struct {
	reg         *metrics.Registry
	invocations *metrics.CounterVec
	duration    *metrics.HistogramVec
}

func newNodeMetrics(n *Node) *nodeMetrics {
	reg := metrics.NewRegistry()
	m := &nodeMetrics{
		reg:         reg,
		invocations: reg.NewCounterVec("andromeda_invocations_total", "Invocations by service and outcome (ok, noop, error, timeout, crashed, oom, rejected, skipped).", "service", "outcome"),
		duration:    reg.NewHistogramVec("andromeda_invocation_duration_seconds", "Wall time of invocations by service, from trigger to recorded run.", nil, "service"),
	}
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
	return m
}

func (m *nodeMetrics) observe(service, outcome string, d time.Duration) {
	m.invocations.With(service, outcome).Inc()
	m.duration.With(service).Observe(d.Seconds())
}

// forget drops a removed service's series.
func (m *nodeMetrics) forget(service string) {
	for _, o := range []sandbox.Outcome{sandbox.OK, sandbox.Noop, sandbox.Error, sandbox.Timeout, sandbox.Crashed, sandbox.OOM, sandbox.Rejected, sandbox.Skipped} {
		m.invocations.Delete(service, string(o))
	}
	m.duration.Delete(service)
}
