package sink_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"takt.dev/ingest/sink"
	"takt.dev/migrations"
	"takt.dev/testkit"
)

// Point-in-time recovery, the seed plan's success criterion, as docs/operations.md
// describes it: a base backup with WAL archiving, writes, a time noted, more writes,
// a restore to that time in a new cluster; the restored database holds exactly what
// was committed by then, and the sink, whose Kafka positions live in PostgreSQL
// beside the rows, refills it from Kafka exactly once.
func TestPointInTimeRecoveryRefillsExactlyOnce(t *testing.T) {
	ctx := context.Background()
	dir := testkit.ServerDir(t)
	pg, err := testkit.StartPostgresArchiving(filepath.Join(dir, "primary"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	migrate(t, pg)
	if err := pg.BaseBackup(filepath.Join(dir, "backup", "base")); err != nil {
		t.Fatal(err)
	}
	k := testkit.Kafka(t)
	pool := connect(t, pg)

	// Before the noted time: 40 envelopes of 25 samples.
	produce(t, k.Brokers(), envelopes(t, "gw-pitr", 40, 25)[:20]...)
	r := start2(t, pool, k.Brokers(), sink.Config{Group: "pitr"})
	waitRows(t, pool, 500)
	r.stop()
	var before int64
	pool.QueryRow(ctx, `SELECT sum(next_offset) FROM sink_offset`).Scan(&before)
	time.Sleep(100 * time.Millisecond)
	target := time.Now()
	time.Sleep(100 * time.Millisecond)
	// After it: the other 20 envelopes, and the WAL archived so that recovery finds a
	// commit past the target.
	produce(t, k.Brokers(), envelopes(t, "gw-pitr", 40, 25)[20:]...)
	r = start2(t, pool, k.Brokers(), sink.Config{Group: "pitr"})
	waitRows(t, pool, 1000)
	r.stop()
	pool.Close()
	if err := pg.ArchiveNow(ctx); err != nil {
		t.Fatal(err)
	}

	restored, err := testkit.RestorePostgres(filepath.Join(dir, "backup", "base"), pg.Archive(), filepath.Join(dir, "restored"), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restored.Close() })
	rpool := connect(t, restored)
	var rows, after int64
	rpool.QueryRow(ctx, `SELECT count(*) FROM samples`).Scan(&rows)
	rpool.QueryRow(ctx, `SELECT sum(next_offset) FROM sink_offset`).Scan(&after)
	if rows != 500 || after != before {
		t.Fatalf("restored to the noted time: %d rows at offsets summing to %d; want the 500 rows and offsets (%d) committed before it", rows, after, before)
	}
	// The sink resumes from the restored offsets: the rest comes again from Kafka,
	// once (waitRows checks every (agent, seq) is there exactly once).
	start2(t, rpool, k.Brokers(), sink.Config{Group: "pitr-restored"})
	waitRows(t, rpool, 1000)
}

// migrate applies Takt's migrations to database takt of pg.
func migrate(t *testing.T, pg *testkit.PostgresServer) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, `CREATE DATABASE takt`)
	c.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := migrations.Open(pg.URL("takt"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
}

func connect(t *testing.T, pg *testkit.PostgresServer) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), pg.URL("takt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
