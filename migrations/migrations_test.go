package migrations_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"takt.dev/migrations"
	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func tableCount(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUpDownUp(t *testing.T) {
	ctx := context.Background()
	d := testkit.NewEmptyDatabase(t)
	db, err := migrations.Open(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := migrations.NewProvider(db)
	if err != nil {
		t.Fatal(err)
	}
	pool := d.Pool(t)

	res, err := p.Up(ctx)
	if err != nil {
		t.Fatalf("first up: %v", err)
	}
	if len(res) != len(p.ListSources()) {
		t.Fatalf("applied %d of %d migrations", len(res), len(p.ListSources()))
	}
	after := tableCount(t, pool)
	if after < 20 {
		t.Fatalf("%d tables after up, want the whole model", after)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down to 0: %v", err)
	}
	if n := tableCount(t, pool); n != 0 {
		t.Fatalf("%d tables left after down to 0", n)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("second up: %v", err)
	}
	if n := tableCount(t, pool); n != after {
		t.Fatalf("%d tables after up/down/up, %d after the first up", n, after)
	}
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("up when up to date: %v", err)
	}
}

// seed makes tenants a and b, each with a site, line, equipment, product and some
// rows in every kind of table, as the owner (which RLS does not restrict).
func seed(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	for _, tn := range []string{"a", "b"} {
		_, err := pool.Exec(ctx, `
WITH tn AS (INSERT INTO tenant VALUES ($1, 'Tenant ' || $1) RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'site', 'Site', 'Europe/Paris' FROM tn RETURNING tenant_id, id),
ar AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'area', 'Area' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line', 'Line' FROM ar RETURNING tenant_id, id),
wc AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'wc', 'WC' FROM l RETURNING tenant_id, id),
e AS (INSERT INTO equipment (tenant_id, work_center_id, code, name, attributes) SELECT tenant_id, id, 'filler-' || $1, 'Filler', '{"vendor":"krones"}' FROM wc RETURNING tenant_id, id),
p AS (INSERT INTO product (tenant_id, code, name, ideal_cycle_time_s) SELECT tenant_id, 'bottle', 'Bottle', 0.5 FROM tn RETURNING tenant_id, id)
INSERT INTO production_run (tenant_id, equipment_id, product_id, start_time, end_time, planned_production_time_s, operating_time_s, total_parts_produced, good_parts)
SELECT e.tenant_id, e.id, p.id, '2026-11-25 06:00Z', '2026-11-25 14:00Z', 28800, 25000, 1000, 990 FROM e, p`, tn)
		if err != nil {
			t.Fatalf("seed %s: %v", tn, err)
		}
		for _, q := range []string{
			`INSERT INTO samples (tenant_id, equipment, tag, ts, value, quality, role, agent, seq) VALUES ($1, 'filler-' || $1, 'speed', '2026-11-25 08:00Z', 1, 1, 1, 'gw', 1)`,
			`INSERT INTO state_observation (tenant_id, equipment, ts, category) VALUES ($1, 'filler-' || $1, '2026-11-25 08:00Z', 1)`,
			`INSERT INTO downtime_reason (tenant_id, code, name, category) VALUES ($1, 101, 'Jam at the infeed', 'breakdown')`,
			`INSERT INTO oee_window (tenant_id, equipment, granularity, starts_at, ends_at, planned_s, run_s, total_count, good_count) VALUES ($1, 'filler-' || $1, 'hour', '2026-11-25 08:00Z', '2026-11-25 09:00Z', 3600, 3000, 100, 99)`,
			`INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id) VALUES ($1, 'seed', 'insert', 'equipment', '1')`,
		} {
			if _, err := pool.Exec(ctx, q, tn); err != nil {
				t.Fatalf("seed %s: %s: %v", tn, q, err)
			}
		}
	}
}

// asTenant runs fn in a transaction as the application role with tenant set locally,
// the way the API does.
func asTenant(t *testing.T, pool *pgxpool.Pool, tenant string, fn func(pgx.Tx) error) error {
	t.Helper()
	return pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), `SET LOCAL ROLE `+migrations.AppRole); err != nil {
			return err
		}
		if tenant != "" {
			if _, err := tx.Exec(context.Background(), `SELECT set_config('app.tenant', $1, true)`, tenant); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

var tenantTables = []string{"tenant", "site", "area", "line", "work_center", "equipment", "product",
	"production_run", "samples", "state_observation", "downtime_reason", "oee_window", "audit_log"}

func TestRowLevelSecurity(t *testing.T) {
	ctx := context.Background()
	pool := testkit.NewDatabase(t).Pool(t)
	seed(t, pool)

	for _, table := range tenantTables {
		t.Run(table, func(t *testing.T) {
			err := asTenant(t, pool, "a", func(tx pgx.Tx) error {
				var total, own int
				if err := tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE tenant_id = 'a') FROM `+table).Scan(&total, &own); err != nil {
					return err
				}
				if total == 0 || total != own {
					t.Errorf("tenant a sees %d rows of %s, %d of them its own; want only its own, at least one", total, table, own)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			err = asTenant(t, pool, "", func(tx pgx.Tx) error {
				var n int
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
					return err
				}
				if n != 0 {
					t.Errorf("with no tenant set, %s shows %d rows; want none", table, n)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}

	// A session pooled after a tenant's transaction must not keep the tenant.
	var leaked int
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+migrations.AppRole); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM samples`).Scan(&leaked)
	})
	if err != nil || leaked != 0 {
		t.Fatalf("a later transaction without a tenant sees %d samples (%v)", leaked, err)
	}

	inserts := map[string]string{
		"samples":   `INSERT INTO samples (tenant_id, equipment, tag, ts, value, quality, role, agent, seq) VALUES ('b', 'x', 'y', now(), 1, 1, 1, 'gw', 99)`,
		"site":      `INSERT INTO site (tenant_id, code, name, time_zone) VALUES ('b', 'intruder', 'X', 'UTC')`,
		"audit_log": `INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id) VALUES ('b', 'mallory', 'insert', 'site', '1')`,
	}
	for table, q := range inserts {
		err := asTenant(t, pool, "a", func(tx pgx.Tx) error { _, err := tx.Exec(ctx, q); return err })
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "42501") {
			t.Errorf("tenant a inserting a %s row for tenant b: err = %v, want SQLSTATE 42501 (row-level security / privilege)", table, err)
		}
	}
	// And tenant a cannot move its own rows to b.
	err = asTenant(t, pool, "a", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE equipment SET tenant_id = 'b'`)
		return err
	})
	if err == nil {
		t.Error("tenant a moved its equipment to tenant b")
	}
	// Tenant a can write its own rows.
	err = asTenant(t, pool, "a", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO site (tenant_id, code, name, time_zone) VALUES ('a', 'second', 'Second', 'America/Chicago')`)
		return err
	})
	if err != nil {
		t.Errorf("tenant a inserting its own site: %v", err)
	}
}

func TestAuditLogIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	pool := testkit.NewDatabase(t).Pool(t)
	seed(t, pool)
	for _, q := range []string{`UPDATE audit_log SET actor = 'nobody'`, `DELETE FROM audit_log`, `TRUNCATE audit_log`} {
		_, err := pool.Exec(ctx, q) // as the owner, the strongest role the app has
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s as owner: err = %v, want refusal", q, err)
		}
		err = asTenant(t, pool, "a", func(tx pgx.Tx) error { _, err := tx.Exec(ctx, q); return err })
		if err == nil {
			t.Errorf("%s as takt_app: accepted", q)
		}
	}
}

func TestConstraints(t *testing.T) {
	ctx := context.Background()
	pool := testkit.NewDatabase(t).Pool(t)
	seed(t, pool)
	cases := map[string]string{
		"end before start": `UPDATE production_run SET end_time = start_time - interval '1 hour'`,
		"good > total":     `UPDATE production_run SET good_parts = total_parts_produced + 1`,
		"operating > plan": `UPDATE production_run SET operating_time_s = planned_production_time_s + 1`,
		"parts add up":     `UPDATE production_run SET scrap_parts = 10, rework_parts = 10`,
		"bad time zone":    `INSERT INTO site (tenant_id, code, name, time_zone) VALUES ('a', 'x', 'X', 'Mars/Olympus')`,
		"code charset":     `INSERT INTO site (tenant_id, code, name, time_zone) VALUES ('a', 'a/b', 'X', 'UTC')`,
		"duplicate code":   `INSERT INTO equipment (tenant_id, work_center_id, code, name) SELECT tenant_id, work_center_id, code, name FROM equipment WHERE tenant_id = 'a'`,
		"cross-tenant ref": `INSERT INTO equipment (tenant_id, work_center_id, code, name) SELECT 'b', id, 'sneaky', 'X' FROM work_center WHERE tenant_id = 'a'`,
		"state category":   `INSERT INTO state_observation (tenant_id, equipment, ts, category) VALUES ('a', 'e', now(), 9)`,
		"reason name":      `INSERT INTO downtime_reason (tenant_id, code, name) VALUES ('a', 7, '')`,
	}
	for name, q := range cases {
		if _, err := pool.Exec(ctx, q); err == nil {
			t.Errorf("%s: accepted %s", name, q)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM equipment WHERE attributes @> '{"vendor":"krones"}'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("jsonb containment over equipment.attributes: %d, %v", n, err)
	}
}

func TestSamplePartitions(t *testing.T) {
	ctx := context.Background()
	d := testkit.NewDatabase(t)
	pool := d.Pool(t)
	db, err := migrations.Open(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO tenant VALUES ('a', 'A')`); err != nil {
		t.Fatal(err)
	}
	insert := func(ts string, seq int) {
		t.Helper()
		_, err := pool.Exec(ctx, `INSERT INTO samples (tenant_id, equipment, tag, ts, value, quality, role, agent, seq) VALUES ('a', 'e', 't', $1, 1, 1, 1, 'gw', $2)`, ts, seq)
		if err != nil {
			t.Fatalf("insert a sample at %s: %v", ts, err)
		}
	}
	where := func(seq int) string {
		t.Helper()
		var part string
		if err := pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM samples WHERE seq = $1`, seq).Scan(&part); err != nil {
			t.Fatalf("sample %d: %v", seq, err)
		}
		return part
	}

	// A day with no partition: the row is kept, in the default partition.
	insert("2026-03-01T12:00:00Z", 1)
	insert("2026-03-01T23:59:59.999999Z", 2)
	insert("2026-03-02T00:00:00Z", 3)
	if p := where(1); p != "samples_default" {
		t.Fatalf("sample for a day without partition went to %s", p)
	}

	day := time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC)
	n, err := migrations.EnsureSamplePartitions(ctx, db, day, 3)
	if err != nil || n != 3 {
		t.Fatalf("EnsureSamplePartitions = %d, %v; want 3 created", n, err)
	}
	for seq, want := range map[int]string{1: "samples_20260301", 2: "samples_20260301", 3: "samples_20260302"} {
		if p := where(seq); p != want {
			t.Errorf("sample %d is in %s after the partition was made, want %s", seq, p, want)
		}
	}
	insert("2026-03-03T06:00:00Z", 4)
	if p := where(4); p != "samples_20260303" {
		t.Errorf("sample for a day with a partition went to %s", p)
	}
	if n, err := migrations.EnsureSamplePartitions(ctx, db, day, 3); err != nil || n != 0 {
		t.Fatalf("EnsureSamplePartitions again = %d, %v; want 0 created", n, err)
	}

	var brin int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE tablename = 'samples_20260302' AND indexdef LIKE '%USING brin (ts)%'`).Scan(&brin); err != nil || brin != 1 {
		t.Fatalf("BRIN index on the new partition: %d, %v", brin, err)
	}

	insert("2026-02-27T00:00:00Z", 5) // old, in the default partition
	dropped, err := migrations.DropSamplePartitions(ctx, db, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	if err != nil || dropped != 1 {
		t.Fatalf("DropSamplePartitions = %d, %v; want 1 dropped", dropped, err)
	}
	var left []int
	rows, _ := pool.Query(ctx, `SELECT seq FROM samples ORDER BY seq`)
	left, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || left[0] != 3 || left[1] != 4 {
		t.Fatalf("after retention the samples left are %v, want [3 4]", left)
	}
}

// A day with a backlog in the default partition (more than the sink's function moves
// under its lock) is left there by takt_ensure_sample_partitions, and moved by
// MoveDefaultSamples in batches while writers keep adding rows of that day and of
// others: every row ends in its day's partition exactly once, the day is attached, a
// day outside the range asked stays in the default partition, and no insert waited
// for the move's lock longer than the session's lock timeout allows.
func TestMoveDefaultSamplesInBatches(t *testing.T) {
	ctx := context.Background()
	d := testkit.NewDatabase(t)
	pool := d.Pool(t)
	db, err := migrations.OpenForMigrations(d.URL, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO tenant VALUES ('a', 'A')`); err != nil {
		t.Fatal(err)
	}
	// 30,000 rows of 2026-03-01 and 10 of 2031-01-01 (a clock gone wrong) in the default partition.
	if _, err := pool.Exec(ctx, `INSERT INTO samples (tenant_id, equipment, tag, ts, value, quality, role, agent, seq)
		SELECT 'a', 'e', 't', '2026-03-01'::timestamptz + g * interval '2 second', g, 1, 1, 'old', g FROM generate_series(1, 30000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO samples (tenant_id, equipment, tag, ts, value, quality, role, agent, seq)
		SELECT 'a', 'e', 't', '2031-01-01'::timestamptz + g * interval '1 second', g, 1, 1, 'future', g FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if n, err := migrations.EnsureSamplePartitions(ctx, db, day, 1); err != nil || n != 0 {
		t.Fatalf("EnsureSamplePartitions of a day with 30,000 rows in the default partition = %d, %v; want it left alone", n, err)
	}

	// Writers: one adds rows of the day being moved, one of the next day (which has a
	// partition), each measuring how long every insert takes.
	if _, err := migrations.EnsureSamplePartitions(ctx, db, day.AddDate(0, 0, 1), 1); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	type result struct {
		n, retried int
		slowest    time.Duration
		err        error
	}
	results := make(chan result, 2)
	for _, w := range []struct {
		agent string
		base  string
	}{{"w1", "2026-03-01T12:00:00Z"}, {"w2", "2026-03-02T12:00:00Z"}} {
		go func() {
			var r result
			defer func() { results <- r }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				_, err := pool.Exec(ctx, `INSERT INTO samples (tenant_id, equipment, tag, ts, value, quality, role, agent, seq)
					VALUES ('a', 'e', 't', $1::timestamptz + $2 * interval '1 millisecond', 1, 1, 1, $3, $2)`, w.base, r.n+1, w.agent)
				if err != nil && strings.Contains(err.Error(), "violates partition constraint") {
					// Routed to the default partition as the day's was attached: tried
					// again, it goes to the new partition (the sink does the same).
					r.retried++
					continue
				}
				if err != nil {
					r.err = err
					return
				}
				r.n++
				r.slowest = max(r.slowest, time.Since(start))
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	var logged int
	days, moved, err := migrations.MoveDefaultSamples(ctx, db, day, day.AddDate(0, 0, 3), 1000, func(string, ...any) { logged++ })
	time.Sleep(200 * time.Millisecond)
	close(stop)
	var written int
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		written += r.n
		// The bound: the final step holds the default partition's lock for the rows that
		// arrived during the batches and the ATTACH; generous for a loaded CI machine.
		if r.slowest > 3*time.Second {
			t.Errorf("an insert waited %v during the move", r.slowest)
		}
		t.Logf("a writer inserted %d rows during the move, the slowest in %v (%d tried again after the attachment)", r.n, r.slowest, r.retried)
	}
	if err != nil || days != 1 || moved < 30000 {
		t.Fatalf("MoveDefaultSamples = %d days, %d rows, %v; want 1 day and at least 30,000 rows", days, moved, err)
	}
	if logged < 30 {
		t.Errorf("%d progress reports for 30 batches", logged)
	}
	counts := map[string]int{}
	rows, err := pool.Query(ctx, `SELECT tableoid::regclass::text || '/' || agent, count(*) FROM samples GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int
		rows.Scan(&k, &n)
		counts[k] = n
	}
	var w1, w2 int
	pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE agent = 'w1'), count(*) FILTER (WHERE agent = 'w2') FROM samples`).Scan(&w1, &w2)
	if counts["samples_20260301/old"] != 30000 || counts["samples_default/future"] != 10 || counts["samples_default/old"] != 0 ||
		counts["samples_20260301/w1"] != w1 || counts["samples_20260302/w2"] != w2 || w1+w2 != written {
		t.Fatalf("rows by partition and writer: %v (w1 %d, w2 %d, written %d)", counts, w1, w2, written)
	}
	var dup int
	pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT agent, seq FROM samples GROUP BY 1, 2 HAVING count(*) > 1) d`).Scan(&dup)
	if dup != 0 {
		t.Fatalf("%d rows twice after the move", dup)
	}
	if days, moved, err := migrations.MoveDefaultSamples(ctx, db, day, day.AddDate(0, 0, 3), 1000, nil); err != nil || days != 0 || moved != 0 {
		t.Fatalf("a second move = %d days, %d rows, %v; want nothing to do", days, moved, err)
	}
}

// A move cut off between batches (the process killed, or its context ended: each batch
// is its own transaction, so either is a stop between commits) leaves rows in the
// default partition and in the day's table not yet attached, none in both; the next
// run resumes and attaches, every row once.
func TestMoveDefaultSamplesResumes(t *testing.T) {
	d := testkit.NewDatabase(t)
	pool := d.Pool(t)
	db, err := migrations.OpenForMigrations(d.URL, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO samples (tenant_id, equipment, tag, ts, value, quality, role, agent, seq)
		SELECT 'a', 'e', 't', '2026-03-01'::timestamptz + g * interval '1 second', g, 1, 1, 'gw', g FROM generate_series(1, 5000) g`); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	cut, cancel := context.WithCancel(ctx)
	batches := 0
	_, moved, err := migrations.MoveDefaultSamples(cut, db, day, day.AddDate(0, 0, 1), 500, func(string, ...any) {
		if batches++; batches == 3 {
			cancel()
		}
	})
	if err == nil || moved < 1500 || moved >= 5000 {
		t.Fatalf("a move cut off after 3 batches: moved %d, %v", moved, err)
	}
	var inDefault, inTable, attached int
	pool.QueryRow(ctx, `SELECT count(*) FROM samples_default`).Scan(&inDefault)
	pool.QueryRow(ctx, `SELECT count(*) FROM samples_20260301`).Scan(&inTable)
	pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhrelid = 'samples_20260301'::regclass`).Scan(&attached)
	if inDefault+inTable != 5000 || inTable != int(moved) || attached != 0 {
		t.Fatalf("after the cut: %d rows in the default partition, %d in the day's table (moved %d), attached %d", inDefault, inTable, moved, attached)
	}
	days, rest, err := migrations.MoveDefaultSamples(ctx, db, day, day.AddDate(0, 0, 1), 500, nil)
	if err != nil || days != 1 || rest != int64(inDefault) {
		t.Fatalf("the resumed move = %d days, %d rows, %v; want 1 day and the %d rows left", days, rest, err, inDefault)
	}
	var total, distinct int
	var part string
	pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq), min(tableoid::regclass::text) FROM samples`).Scan(&total, &distinct, &part)
	if total != 5000 || distinct != 5000 || part != "samples_20260301" {
		t.Fatalf("after resuming: %d rows, %d distinct, in %s", total, distinct, part)
	}
}
