package sink_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"takt.dev/ingest/sink"
	"takt.dev/migrations"
	"takt.dev/testkit"
)

// The bound this test states: while a release's migrations run, no write into samples
// waits longer than the migration session's lock timeout plus this much (a loaded,
// race-instrumented CI machine's ordinary slowness).
const (
	migrationLockTimeout = 500 * time.Millisecond
	writeWaitHeadroom    = 2 * time.Second
)

// release is a release's migrations written by the rules of migrations/online.go, on the
// table the sink writes all the time: expand (a column, and a trigger that fills it for
// writers that do not know it: the running sink), backfill in batches, an index built
// concurrently partition by partition, contract (NOT NULL through a CHECK added NOT
// VALID, then validated, then SET NOT NULL, which the valid CHECK lets skip the scan).
func release() []*goose.Migration {
	tx := func(v int64, stmts ...string) *goose.Migration {
		return goose.NewGoMigration(v, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			for _, s := range stmts {
				if _, err := tx.ExecContext(ctx, s); err != nil {
					return fmt.Errorf("%s: %w", s, err)
				}
			}
			return nil
		}}, nil)
	}
	db := func(v int64, f func(ctx context.Context, db *sql.DB) error) *goose.Migration {
		return goose.NewGoMigration(v, &goose.GoFunc{RunDB: f}, nil)
	}
	return []*goose.Migration{
		tx(90001,
			`ALTER TABLE samples ADD COLUMN ts_day date`,
			`CREATE FUNCTION samples_fill_ts_day() RETURNS trigger LANGUAGE plpgsql AS $$
			 BEGIN NEW.ts_day := (NEW.ts AT TIME ZONE 'UTC')::date; RETURN NEW; END $$`,
			`CREATE TRIGGER samples_fill_ts_day BEFORE INSERT ON samples FOR EACH ROW EXECUTE FUNCTION samples_fill_ts_day()`),
		db(90002, func(ctx context.Context, db *sql.DB) error {
			_, err := migrations.Backfill(ctx, db, "samples", "ts_day = (ts AT TIME ZONE 'UTC')::date", "ts_day IS NULL", 64)
			return err
		}),
		db(90003, func(ctx context.Context, db *sql.DB) error {
			return migrations.CreateIndexConcurrently(ctx, db, "samples_ts_day", "samples", "ts_day, equipment")
		}),
		tx(90004, `ALTER TABLE samples ADD CONSTRAINT samples_ts_day_set CHECK (ts_day IS NOT NULL) NOT VALID`),
		tx(90005, `ALTER TABLE samples VALIDATE CONSTRAINT samples_ts_day_set`),
		tx(90006, `ALTER TABLE samples ALTER COLUMN ts_day SET NOT NULL`, `ALTER TABLE samples DROP CONSTRAINT samples_ts_day_set`),
	}
}

// A release migrates the samples table while the sink writes into it under load and a
// reporting query holds a long transaction on it (which an ALTER would queue behind,
// and every writer behind the ALTER): the migration gives up on the lock and tries
// again until the query is done, so a writer probing the table never waits longer
// than the stated bound; the migration completes (column filled everywhere, NOT NULL,
// index valid on every partition), and every sample the sink was sent is stored once.
func TestMigrationWhileTheSinkWrites(t *testing.T) {
	ctx := context.Background()
	k := testkit.Kafka(t)
	d := testkit.NewDatabase(t)
	pool := d.Pool(t)

	// 20,000 rows before the release.
	produce(t, k.Brokers(), envelopes(t, "before", 200, 100)...)
	start(t, pool, k.Brokers(), sink.Config{Group: "online", BatchRows: 5000})
	waitFor(t, "the first 20,000 rows", func() bool {
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM samples`).Scan(&n)
		return n == 20000
	})

	// Load: 500 samples every 100 ms from new agents, until the migration is done.
	stop := make(chan struct{})
	var produced atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			produce(t, k.Brokers(), envelopes(t, fmt.Sprint("load-", i), 5, 100)...)
			produced.Add(500)
		}
	}()
	// The probe: one row at a time into samples, each insert timed.
	var probes atomic.Int64
	var slowest atomic.Int64
	probeErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := int64(1); ; seq++ {
			select {
			case <-stop:
				probeErr <- nil
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			_, err := pool.Exec(ctx, `INSERT INTO samples (tenant_id, equipment, tag, ts, value, quality, role, agent, seq)
				VALUES ('acme', 'eq-0', 'probe', '2026-11-25T06:00:00Z'::timestamptz + $1 * interval '1 millisecond', 1, 1, 1, 'probe', $1)`, seq)
			if err != nil {
				probeErr <- err
				return
			}
			probes.Add(1)
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
		}
	}()

	// The reporting query: a transaction that read samples and stays open 4 s.
	report, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := report.QueryRow(ctx, `SELECT count(*) FROM samples`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(4 * time.Second); report.Rollback(ctx) }()

	db, err := migrations.OpenForMigrations(d.URL, migrationLockTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var retries atomic.Int64
	began := time.Now()
	applied, err := migrations.UpOnline(ctx, db, migrations.UpOptions{Retries: 20, Pause: 250 * time.Millisecond, Extra: release(),
		Log: func(string, ...any) { retries.Add(1) }})
	took := time.Since(began)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("the release's migrations: %v", err)
	}
	if e := <-probeErr; e != nil {
		t.Fatalf("a probe insert failed during the migration: %v", e)
	}
	if len(applied) != 6 {
		t.Fatalf("applied %d migrations, want the release's 6", len(applied))
	}
	bound := migrationLockTimeout + writeWaitHeadroom
	t.Logf("migrated in %v with %d retries; %d probe inserts, the slowest %v (bound %v); %d samples offered meanwhile",
		took.Round(time.Millisecond), retries.Load(), probes.Load(), time.Duration(slowest.Load()).Round(time.Millisecond), bound, produced.Load())
	if retries.Load() == 0 {
		t.Fatal("no migration gave up on a lock: the long transaction did not stand in the way, so the test proves nothing")
	}
	if time.Duration(slowest.Load()) > bound {
		t.Errorf("a write waited %v during the migration: over the bound %v", time.Duration(slowest.Load()), bound)
	}
	if probes.Load() < int64(took/(time.Second))*10 {
		t.Errorf("only %d probe inserts in %v: writes stalled", probes.Load(), took)
	}

	// Every sample offered is stored once, with the new column filled, and the schema is
	// what the release says.
	want := 20000 + int(produced.Load())
	waitFor(t, fmt.Sprint(want, " samples from the sink"), func() bool {
		pool.QueryRow(ctx, `SELECT count(*) FROM samples WHERE agent <> 'probe'`).Scan(&n)
		return n >= want
	})
	var total, distinct, unfilled, probeRows int
	pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT (agent, seq)), count(*) FILTER (WHERE ts_day IS DISTINCT FROM (ts AT TIME ZONE 'UTC')::date)
		FROM samples WHERE agent <> 'probe'`).Scan(&total, &distinct, &unfilled)
	pool.QueryRow(ctx, `SELECT count(*) FROM samples WHERE agent = 'probe'`).Scan(&probeRows)
	if total != want || distinct != want || unfilled != 0 || int64(probeRows) != probes.Load() {
		t.Fatalf("samples: %d rows, %d distinct, %d without the right ts_day, %d probe rows of %d; want %d", total, distinct, unfilled, probeRows, probes.Load(), want)
	}
	var notNull bool
	var invalid, leaves, indexed int
	pool.QueryRow(ctx, `SELECT attnotnull FROM pg_attribute WHERE attrelid = 'samples'::regclass AND attname = 'ts_day'`).Scan(&notNull)
	pool.QueryRow(ctx, `SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE '%samples_ts_day' AND NOT i.indisvalid`).Scan(&invalid)
	pool.QueryRow(ctx, `SELECT count(*) FROM pg_partition_tree('samples') WHERE isleaf`).Scan(&leaves)
	pool.QueryRow(ctx, `SELECT count(*) FROM pg_partition_tree('samples_ts_day') WHERE isleaf`).Scan(&indexed)
	if !notNull || invalid != 0 || indexed != leaves {
		t.Fatalf("after the release: ts_day NOT NULL %v, %d invalid indexes, %d of %d partitions indexed", notNull, invalid, indexed, leaves)
	}
}
