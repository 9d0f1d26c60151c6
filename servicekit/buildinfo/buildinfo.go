// Package buildinfo is the takt_build_info metric every Takt program exports.
package buildinfo

import (
	"github.com/prometheus/client_golang/prometheus"

	"takt.dev/servicekit"
)

// Collector is the takt_build_info gauge (always 1), labelled with the program and
// its Version, for dashboards to tell which build runs where.
func Collector(program string) prometheus.Collector {
	v, r, g := servicekit.Version()
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "takt_build_info",
		Help: "Which build this process runs: always 1, with its program, version, VCS revision and Go version."},
		[]string{"program", "version", "revision", "goversion"})
	gauge.WithLabelValues(program, v, r, g).Set(1)
	return gauge
}
