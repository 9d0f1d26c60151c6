package memlimit

import (
	"runtime/debug"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSet(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	reg := prometheus.NewRegistry()
	if got := Set(env(nil), 100<<20, reg); got != 100<<20 || debug.SetMemoryLimit(-1) != 100<<20 {
		t.Fatalf("limit %d, runtime %d", got, debug.SetMemoryLimit(-1))
	}
	if n, err := testutil.GatherAndCount(reg, "takt_memory_limit_bytes"); err != nil || n != 1 {
		t.Fatalf("takt_memory_limit_bytes: %d series, %v", n, err)
	}
	// GOMEMLIMIT wins: the runtime read it at start (here: what is in force).
	debug.SetMemoryLimit(300 << 20)
	if got := Set(env(map[string]string{"GOMEMLIMIT": "300MiB"}), 100<<20, prometheus.NewRegistry()); got != 300<<20 {
		t.Fatalf("with GOMEMLIMIT: %d", got)
	}
	debug.SetMemoryLimit(1<<63 - 1)
	reg = prometheus.NewRegistry()
	if got := Set(env(nil), -1, reg); got != -1 || debug.SetMemoryLimit(-1) != 1<<63-1 {
		t.Fatalf("no limit: %d", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "takt_memory_limit_bytes"); n != 0 {
		t.Fatal("a limit is exported where none is set")
	}
}
