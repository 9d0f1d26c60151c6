package modbus

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Modbus source's Prometheus metrics, labelled by device.
type Metrics struct {
	polls       *prometheus.CounterVec
	tags        *prometheus.CounterVec
	errors      *prometheus.CounterVec
	connected   *prometheus.GaugeVec
	pollSeconds *prometheus.HistogramVec
}

// NewMetrics registers the metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_agent_modbus_polls_total",
			Help: "Polls of a Modbus device."}, []string{"device"}),
		tags: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_agent_modbus_tags_read_total",
			Help: "Tag readings produced, good or bad."}, []string{"device"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_agent_modbus_errors_total",
			Help: "Failed connects and reads, by kind (connect, transport, exception)."}, []string{"device", "kind"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "takt_agent_modbus_connected",
			Help: "1 while the device's connection is open."}, []string{"device"}),
		pollSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "takt_agent_modbus_poll_seconds",
			Help: "Duration of a successful poll of every request of a device.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"device"}),
	}
	if reg != nil {
		reg.MustRegister(m.polls, m.tags, m.errors, m.connected, m.pollSeconds)
	}
	return m
}
