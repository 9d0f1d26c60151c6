package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"takt.dev/schemas"
)

type metrics struct {
	messages      prometheus.Counter
	samples       prometheus.Counter
	deadLetters   *prometheus.CounterVec
	statuses      *prometheus.CounterVec
	retries       prometheus.Counter
	queueFull     prometheus.Counter
	queueDepth    prometheus.Gauge
	queueBytes    prometheus.Gauge
	connected     prometheus.Gauge
	disconnects   prometheus.Counter
	batchMessages prometheus.Histogram
	writeSeconds  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_bridge_messages_total",
			Help: "MQTT messages written to Kafka (as envelopes or dead letters) and acknowledged."}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_bridge_samples_total",
			Help: "Samples in the envelopes written to Kafka."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_bridge_dead_letters_total",
			Help: "MQTT messages refused and written to the dead-letter topic, by reason."}, []string{"reason"}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_bridge_agent_status_total",
			Help: "Agents' births (online) and deaths (offline) written to the status topic."}, []string{"state"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_bridge_kafka_retries_total",
			Help: "Kafka writes retried after a failure."}),
		queueFull: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_bridge_queue_full_total",
			Help: "Times the bounded queue of unacknowledged messages was full, so the bridge stopped reading from the broker."}),
		queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_bridge_queue_bytes",
			Help: "Payload bytes received from MQTT and not yet acknowledged (bounded by bridge.queue_bytes)."}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_bridge_queue_depth",
			Help: "MQTT messages received and not yet written to Kafka."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "takt_bridge_mqtt_connected",
			Help: "1 while connected and subscribed to the MQTT broker."}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_bridge_mqtt_disconnects_total",
			Help: "MQTT connections lost."}),
		batchMessages: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "takt_bridge_batch_messages",
			Help: "MQTT messages per Kafka write.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "takt_bridge_kafka_write_seconds",
			Help: "Latency of successful Kafka writes (acks=all).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
	}
	if reg != nil {
		reg.MustRegister(m.queueBytes, m.messages, m.samples, m.deadLetters, m.retries, m.queueFull, m.queueDepth,
			m.connected, m.disconnects, m.batchMessages, m.writeSeconds, m.statuses)
	}
	for _, r := range schemas.Reasons() {
		m.deadLetters.WithLabelValues(string(r))
	}
	return m
}
