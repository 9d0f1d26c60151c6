// Package memlimit sets the Go runtime's soft memory limit of a service from its
// configuration and exports it.
package memlimit

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set sets the Go runtime's soft memory limit to limit bytes (as GOMEMLIMIT
// would: the collector works harder as the heap nears it, so that the process stays
// under it at the cost of CPU) unless GOMEMLIMIT is set in the environment, which
// wins; limit < 0 sets none. It returns the limit in force (negative: none) and, when
// there is one, exports it as takt_memory_limit_bytes, to be read beside
// process_resident_memory_bytes and go_memstats_heap_inuse_bytes.
func Set(getenv func(string) string, limit int64, reg prometheus.Registerer) int64 {
	if getenv("GOMEMLIMIT") == "" {
		if limit < 0 {
			return -1
		}
		debug.SetMemoryLimit(limit)
	}
	limit = debug.SetMemoryLimit(-1) // reads it back
	if limit == 1<<63-1 {
		return -1
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "takt_memory_limit_bytes",
		Help: "The Go runtime's soft memory limit of this process (memory_limit, or GOMEMLIMIT)."}, func() float64 { return float64(limit) }))
	return limit
}
