// Package poolstats exports a pgx connection pool's statistics to Prometheus:
// connections in use, idle and open against the pool's bound, and how often and
// how long acquiring one had to wait (a pool too small for the load shows there
// first).
package poolstats

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	labels   = []string{"pool"}
	acquired = prometheus.NewDesc("takt_db_pool_acquired_connections", "Connections in use.", labels, nil)
	idle     = prometheus.NewDesc("takt_db_pool_idle_connections", "Idle connections.", labels, nil)
	total    = prometheus.NewDesc("takt_db_pool_connections", "Open connections (in use, idle and being opened).", labels, nil)
	maxConns = prometheus.NewDesc("takt_db_pool_max_connections", "The pool's bound (pool_max_conns in the URL).", labels, nil)
	acquires = prometheus.NewDesc("takt_db_pool_acquires_total", "Connections acquired.", labels, nil)
	waits    = prometheus.NewDesc("takt_db_pool_acquire_waits_total", "Acquisitions that waited: no idle connection was there.", labels, nil)
	waited   = prometheus.NewDesc("takt_db_pool_acquire_seconds_total", "Time spent acquiring connections.", labels, nil)
	canceled = prometheus.NewDesc("takt_db_pool_acquire_canceled_total", "Acquisitions given up (their context ended first).", labels, nil)
)

// Collector collects the statistics of named pools ("primary", "replica-0"...).
type Collector struct {
	pools map[string]*pgxpool.Pool
}

// New is a collector of pools, by name.
func New(pools map[string]*pgxpool.Pool) *Collector { return &Collector{pools: pools} }

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{acquired, idle, total, maxConns, acquires, waits, waited, canceled} {
		ch <- d
	}
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for name, p := range c.pools {
		s := p.Stat()
		ch <- prometheus.MustNewConstMetric(acquired, prometheus.GaugeValue, float64(s.AcquiredConns()), name)
		ch <- prometheus.MustNewConstMetric(idle, prometheus.GaugeValue, float64(s.IdleConns()), name)
		ch <- prometheus.MustNewConstMetric(total, prometheus.GaugeValue, float64(s.TotalConns()), name)
		ch <- prometheus.MustNewConstMetric(maxConns, prometheus.GaugeValue, float64(s.MaxConns()), name)
		ch <- prometheus.MustNewConstMetric(acquires, prometheus.CounterValue, float64(s.AcquireCount()), name)
		ch <- prometheus.MustNewConstMetric(waits, prometheus.CounterValue, float64(s.EmptyAcquireCount()), name)
		ch <- prometheus.MustNewConstMetric(waited, prometheus.CounterValue, s.AcquireDuration().Seconds(), name)
		ch <- prometheus.MustNewConstMetric(canceled, prometheus.CounterValue, float64(s.CanceledAcquireCount()), name)
	}
}
