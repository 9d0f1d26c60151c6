package buffer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the disk buffer's Prometheus metrics.
type Metrics struct {
	bytes          prometheus.Gauge
	maxBytes       prometheus.Gauge
	records        prometheus.Gauge
	appended       prometheus.Counter
	acked          prometheus.Counter
	droppedRecords prometheus.Counter
	droppedSamples prometheus.Counter
	fullWaits      prometheus.Counter
	corrupt        prometheus.Counter
	replayEvicted  prometheus.Counter
	tornSamples    prometheus.Counter
}

// NewMetrics registers the metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		bytes:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_agent_buffer_bytes", Help: "Bytes of the disk buffer's segments."}),
		maxBytes:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_agent_buffer_max_bytes", Help: "The disk buffer's bound (buffer.max_bytes)."}),
		records:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_agent_buffer_records", Help: "Envelopes in the buffer from the head on (depth)."}),
		appended:       prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_appended_samples_total", Help: "Samples written to the buffer."}),
		acked:          prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_acked_samples_total", Help: "Samples acknowledged by the broker."}),
		droppedRecords: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_dropped_envelopes_total", Help: "Envelopes dropped unsent because the buffer was full (policy drop_oldest)."}),
		droppedSamples: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_dropped_samples_total", Help: "Samples dropped unsent because the buffer was full (policy drop_oldest)."}),
		fullWaits:      prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_full_waits_total", Help: "Times an append waited for space (policy pause)."}),
		corrupt:        prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_corrupt_tails_total", Help: "Torn or corrupt segment ends cut off at start-up."}),
		tornSamples: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_torn_samples_total",
			Help: "Samples of torn records cut off at start-up, as far as their headers tell (lost to a power loss before fsync)."}),
		replayEvicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_agent_buffer_replay_evicted_segments_total",
			Help: "Segments of acknowledged envelopes, kept for the replay window, deleted early because the buffer was full."}),
	}
	if reg != nil {
		reg.MustRegister(m.bytes, m.maxBytes, m.records, m.appended, m.acked, m.droppedRecords, m.droppedSamples, m.fullWaits, m.corrupt, m.replayEvicted, m.tornSamples)
	}
	return m
}
