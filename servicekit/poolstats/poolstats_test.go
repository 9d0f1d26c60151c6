package poolstats

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func testURL(t *testing.T) string { return testkit.NewDatabase(t).URL }

// A pool of one connection, held while another acquisition waits and gives up: the
// exported figures say so.
func TestPoolStatistics(t *testing.T) {
	url := strings.TrimSpace(testURL(t))
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(map[string]*pgxpool.Pool{"primary": pool}))
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := pool.Acquire(ctx); err == nil {
		t.Fatal("a second connection from a pool of one")
	}
	cancel()
	want := `
# HELP takt_db_pool_acquired_connections Connections in use.
# TYPE takt_db_pool_acquired_connections gauge
takt_db_pool_acquired_connections{pool="primary"} 1
# HELP takt_db_pool_acquire_canceled_total Acquisitions given up (their context ended first).
# TYPE takt_db_pool_acquire_canceled_total counter
takt_db_pool_acquire_canceled_total{pool="primary"} 1
# HELP takt_db_pool_max_connections The pool's bound (pool_max_conns in the URL).
# TYPE takt_db_pool_max_connections gauge
takt_db_pool_max_connections{pool="primary"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "takt_db_pool_acquired_connections",
		"takt_db_pool_acquire_canceled_total", "takt_db_pool_max_connections"); err != nil {
		t.Fatal(err)
	}
	conn.Release()
}
