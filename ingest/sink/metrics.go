package sink

import (
	"github.com/prometheus/client_golang/prometheus"

	"takt.dev/schemas"
)

type metrics struct {
	rows               prometheus.Counter
	envelopes          prometheus.Counter
	duplicates         prometheus.Counter
	deadLetters        *prometheus.CounterVec
	outsideWindow      prometheus.Counter
	deadLettersIndexed prometheus.Counter
	retries            prometheus.Counter
	partitionsCreated  prometheus.Counter
	lag                *prometheus.GaugeVec
	batchRows          prometheus.Histogram
	commitSeconds      prometheus.Histogram
	copyWaits          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_sink_rows_total",
			Help: "Sample rows committed to PostgreSQL (rate() of it is the COPY rows/s)."}),
		envelopes: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_sink_envelopes_total",
			Help: "Envelopes committed to PostgreSQL."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_sink_duplicate_envelopes_total",
			Help: "Envelopes dropped because they were already committed."}),
		deadLettersIndexed: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_sink_dead_letters_indexed_total",
			Help: "Dead letters recorded in the dead_letter table (what the API lists to each tenant)."}),
		outsideWindow: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_sink_rows_outside_window_total",
			Help: "Rows whose day lies outside the timestamp window: stored in the default partition, no partition made for them."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "takt_sink_dead_letters_total",
			Help: "Records written to the dead-letter topic, by reason."}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_sink_retries_total",
			Help: "Batch commits retried after a failure."}),
		partitionsCreated: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_sink_partitions_created_total",
			Help: "Daily sample partitions created on demand."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "takt_sink_lag_records",
			Help: "Records behind the partition's high-water mark at the last fetch."}, []string{"partition"}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "takt_sink_batch_rows",
			Help: "Rows per committed batch.", Buckets: prometheus.ExponentialBuckets(10, 2, 14)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "takt_sink_batch_seconds",
			Help: "Time to write and commit a batch, retries included.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		copyWaits: prometheus.NewCounter(prometheus.CounterOpts{Name: "takt_sink_copy_slot_waits_total",
			Help: "Batches that waited for a free slot (sink.max_concurrent_copies) before being written."}),
	}
	if reg != nil {
		reg.MustRegister(m.deadLettersIndexed, m.outsideWindow, m.rows, m.envelopes, m.duplicates, m.deadLetters, m.retries, m.partitionsCreated,
			m.lag, m.batchRows, m.commitSeconds, m.copyWaits)
	}
	for _, r := range schemas.Reasons() {
		m.deadLetters.WithLabelValues(string(r))
	}
	return m
}
