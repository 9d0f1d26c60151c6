package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"takt.dev/testkit"
)

// plant registers n equipment on one line of a Europe/Paris site with a two-shift
// calendar, and gives each days of data reported by exception: a state change every
// 50 minutes (running, a breakdown, running, a changeover), a total counter reading
// every 10 minutes.
func plant(tb testing.TB, pool *pgxpool.Pool, n, days int, from time.Time) {
	tb.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
WITH tn AS (INSERT INTO tenant VALUES ('acme', 'Acme') RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'lyon', 'Lyon', 'Europe/Paris' FROM tn RETURNING tenant_id, id),
sh AS (INSERT INTO shift_pattern (tenant_id, site_id, name, starts_at, duration, weekdays)
	SELECT tenant_id, id, n, t::time, interval '8 hours', '{1,2,3,4,5}' FROM s, (VALUES ('early', '06:00'), ('late', '14:00')) AS v(n, t)),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'pack', 'Pack' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-1', 'L1' FROM a RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s)
SELECT tenant_id, id, 'eq-' || g, 'Eq ' || g, 1.5 FROM w, generate_series(1, $1) AS g`, n)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO state_observation (tenant_id, equipment, ts, category, reason_code)
		SELECT 'acme', 'eq-' || g, t, (ARRAY[1, 3, 1, 2])[(extract(epoch FROM t - $2::timestamptz)::bigint / 3000) % 4 + 1], 0
		FROM generate_series(1, $1) AS g, generate_series($2::timestamptz, $2::timestamptz + make_interval(days => $3) - interval '1 second', interval '50 minutes') AS t`,
		n, from, days)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO counter_reading (tenant_id, equipment, tag, kind, ts, value, wrap)
		SELECT 'acme', 'eq-' || g, 'total', 1, t, (extract(epoch FROM t - $2::timestamptz)::bigint / 3) % 65536, 65536
		FROM generate_series(1, $1) AS g, generate_series($2::timestamptz, $2::timestamptz + make_interval(days => $3) - interval '1 second', interval '10 minutes') AS t`,
		n, from, days)
	if err != nil {
		tb.Fatal(err)
	}
}

func TestMain(m *testing.M) { testkit.Main(m) }

// recompute prints its progress and computes every day in scope.
func TestRecomputeCommand(t *testing.T) {
	db := testkit.NewDatabase(t)
	from := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	plant(t, db.Pool(t), 3, 4, from)
	env := func(k string) string { return map[string]string{"DATABASE_URL": db.URL}[k] }
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"recompute", "-from", "2026-11-02", "-to", "2026-11-05", "-equipment", "eq-2", "-progress", "1ms"}, env, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "recomputed 4 equipment-days") || !strings.Contains(errOut.String(), "4/4 equipment-days (100.0%)") {
		t.Fatalf("stdout %q\nstderr %q", out.String(), errOut.String())
	}
	var windows, others int
	db.Pool(t).QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE equipment = 'eq-2' AND granularity = 'day'),
		count(*) FILTER (WHERE equipment <> 'eq-2') FROM oee_window`).Scan(&windows, &others)
	if windows < 4 || others != 0 {
		t.Fatalf("%d day windows of eq-2, %d windows of others", windows, others)
	}
	for _, c := range []struct{ args, want string }{
		{"recompute", "-from \"\": want a date"},
		{"recompute -from 2026-11-05 -to 2026-11-01", "before -from"},
		{"recompute -from 2025-01-01 -to 2026-11-01", "more than 400 days"},
	} {
		err := run(context.Background(), strings.Fields(c.args), env, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.args, err, c.want)
		}
	}
}

// BenchmarkRecompute recomputes 30 days of 100 equipment (3,000 equipment-days, each
// with its hour, shift and day windows) and reports equipment-days per second.
func BenchmarkRecompute(b *testing.B) {
	db := testkit.NewDatabase(b)
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	plant(b, db.Pool(b), 100, 30, from)
	env := func(k string) string { return map[string]string{"DATABASE_URL": db.URL}[k] }
	days := 0
	b.ResetTimer()
	for range b.N {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), []string{"recompute", "-from", "2026-10-01", "-to", "2026-10-30", "-progress", "10s"}, env, &out, &errOut); err != nil {
			b.Fatalf("%v\n%s", err, errOut.String())
		}
		days += 3000
	}
	b.ReportMetric(float64(days)/b.Elapsed().Seconds(), "aggregator_recompute_days_per_s=days/s")
}
