package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// Migrations without downtime. The sink writes samples all the time; a migration must
// never make it wait long. The rules every migration follows (docs/operations.md,
// "Upgrade"):
//
//   - Expand, backfill, contract, in separate migrations (and releases): add what is
//     new so that old and new binaries both work (a nullable column, or one with a
//     constant default, which PostgreSQL adds without rewriting the table); fill it in
//     batches (Backfill), each its own short transaction; only then remove what is
//     old or add NOT NULL (through a CHECK added NOT VALID, then VALIDATEd, which
//     does not block writers).
//   - Indexes on tables being written are built CONCURRENTLY, in a migration that runs
//     outside a transaction (-- +goose NO TRANSACTION, or a Go migration with RunDB),
//     and on a partitioned table partition by partition, then attached.
//   - Every migration session gives up waiting for a lock after a lock timeout
//     (OpenForMigrations): a migration's ALTER that waits behind a long transaction
//     would otherwise make every writer queue behind it. A migration that times out is
//     rolled back whole and tried again after a pause (UpOnline), so writers wait at
//     most about the lock timeout, once per try.

// OpenForMigrations opens a database/sql handle whose sessions wait at most
// lockTimeout for any lock (0: as long as it takes).
func OpenForMigrations(url string, lockTimeout time.Duration) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if lockTimeout < 0 {
		return nil, fmt.Errorf("lock timeout %v: want 0 (none) or more", lockTimeout)
	}
	cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(lockTimeout.Milliseconds(), 10)
	return stdlib.OpenDB(*cfg), nil
}

// UpOptions tune UpOnline.
type UpOptions struct {
	// Retries is how many more times a migration that gave up waiting for a lock is
	// tried (0: never); Pause is the wait before the first retry, doubled each time up
	// to a minute.
	Retries int
	Pause   time.Duration
	// Log reports each retry; nil: silent.
	Log func(msg string, args ...any)
	// Extra are migrations applied after the embedded ones (tests use them to run a
	// release's expand, backfill and contract steps).
	Extra []*goose.Migration
}

// UpOnline applies every pending migration, retrying those that timed out waiting for
// a lock (SQLSTATE 55P03) as opts says. It returns the migrations applied, in order.
func UpOnline(ctx context.Context, db *sql.DB, opts UpOptions) ([]*goose.MigrationResult, error) {
	p, err := NewProvider(db, opts.Extra...)
	if err != nil {
		return nil, err
	}
	var applied []*goose.MigrationResult
	pause := opts.Pause
	for attempt := 0; ; attempt++ {
		res, err := p.Up(ctx)
		applied = append(applied, res...)
		if err == nil {
			return applied, nil
		}
		var partial *goose.PartialError
		if errors.As(err, &partial) {
			applied = append(applied, partial.Applied...)
		}
		if !IsLockTimeout(err) || attempt >= opts.Retries {
			return applied, fmt.Errorf("migrate up: %w", err)
		}
		if opts.Log != nil {
			opts.Log("a migration gave up waiting for a lock and was rolled back; trying again", "try", attempt+2, "of", opts.Retries+1, "in", pause, "err", err)
		}
		select {
		case <-ctx.Done():
			return applied, ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Minute)
	}
}

// IsLockTimeout says whether err is PostgreSQL's "canceling statement due to lock
// timeout" (SQLSTATE 55P03, lock_not_available).
func IsLockTimeout(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "55P03"
}

// Backfill sets set (an assignment list, such as "quality_name = 'good'") on the rows
// of table that match where (which must stop matching a row once it is set, such as
// "quality_name IS NULL"), in batches: on each leaf partition (or the table itself),
// pagesPerBatch heap pages at a time by TID range, each batch its own statement and
// transaction, so that it holds row locks on one batch at a time and never scans what
// it has done. Rows written after it started are the writers' to fill (a column's
// default). It returns the rows it updated.
func Backfill(ctx context.Context, db *sql.DB, table, set, where string, pagesPerBatch int) (int64, error) {
	if pagesPerBatch < 1 {
		return 0, fmt.Errorf("backfill %s: pages per batch %d: want 1 or more", table, pagesPerBatch)
	}
	rows, err := db.QueryContext(ctx, `
		SELECT relid::regclass::text, (pg_relation_size(relid) / current_setting('block_size')::bigint)
		FROM pg_partition_tree($1::regclass) WHERE isleaf ORDER BY 1`, table)
	if err != nil {
		return 0, fmt.Errorf("backfill %s: %w", table, err)
	}
	type leaf struct {
		name  string
		pages int64
	}
	var leaves []leaf
	for rows.Next() {
		var l leaf
		if err := rows.Scan(&l.name, &l.pages); err != nil {
			rows.Close()
			return 0, err
		}
		leaves = append(leaves, l)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	var total int64
	for _, l := range leaves {
		for page := int64(0); page < l.pages; page += int64(pagesPerBatch) {
			res, err := db.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET %s WHERE ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid AND (%s)`,
				l.name, set, page, page+int64(pagesPerBatch), where))
			if err != nil {
				return total, fmt.Errorf("backfill %s, pages %d..%d: %w", l.name, page, page+int64(pagesPerBatch), err)
			}
			n, _ := res.RowsAffected()
			total += n
		}
	}
	return total, nil
}

// MoveDefaultSamples gives each UTC day in [from, to) that has rows in the default
// partition its own partition, moving the rows in batches of batch rows, each its own
// short transaction, so that writers never wait for the move: the day's table is
// built beside the default partition, and only the last step (the rows that arrived
// meanwhile, then ATTACH) locks the default partition, briefly. Until then the moved
// rows are in a table not yet attached: queries of samples do not see them (the
// aggregator's OEE does not read samples). Interrupted, it resumes where it stopped.
// Rows of days outside [from, to) stay in the default partition (a clock gone wrong
// must not make a table per day it names). It returns the days and rows moved.
func MoveDefaultSamples(ctx context.Context, db *sql.DB, from, to time.Time, batch int, log func(msg string, args ...any)) (days int, moved int64, err error) {
	if batch < 1 {
		return 0, 0, fmt.Errorf("move default samples: batch %d: want 1 or more", batch)
	}
	rows, err := db.QueryContext(ctx, `
		SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM samples_default WHERE ts >= $1 AND ts < $2 ORDER BY 1`, from, to)
	if err != nil {
		return 0, 0, fmt.Errorf("move default samples: %w", err)
	}
	var list []time.Time
	for rows.Next() {
		var d time.Time
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return 0, 0, err
		}
		list = append(list, d)
	}
	if err := rows.Close(); err != nil {
		return 0, 0, err
	}
	for _, d := range list {
		n, err := moveDay(ctx, db, d, batch, log)
		moved += n
		if err != nil {
			return days, moved, fmt.Errorf("move default samples of %s: %w", d.Format(time.DateOnly), err)
		}
		days++
	}
	return days, moved, nil
}

func moveDay(ctx context.Context, db *sql.DB, day time.Time, batch int, log func(string, ...any)) (int64, error) {
	part := "samples_" + day.Format("20060102")
	lo, hi := day.Format(time.DateOnly)+" 00:00:00+00", day.AddDate(0, 0, 1).Format(time.DateOnly)+" 00:00:00+00"
	ident := pgx.Identifier{part}.Sanitize()
	// The day's table, beside the default partition, with the range as a constraint so
	// that ATTACH need not scan it. The partitions' lock serialises this with the sink's
	// takt_ensure_sample_partitions, which leaves a day whose table exists alone.
	err := inTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('takt_sample_partitions'))`); err != nil {
			return err
		}
		var attached bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhparent = 'samples'::regclass)`, part).Scan(&attached); err != nil {
			return err
		}
		if attached {
			return fmt.Errorf("%s is attached already, yet the default partition holds rows of its day", part)
		}
		stmts := []string{
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (LIKE samples INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`, ident),
			fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s`, ident, pgx.Identifier{part + "_range"}.Sanitize()),
			fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s CHECK (ts >= '%s' AND ts < '%s')`, ident, pgx.Identifier{part + "_range"}.Sanitize(), lo, hi),
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	move := fmt.Sprintf(`WITH moved AS (
			DELETE FROM samples_default WHERE ctid = ANY (ARRAY(
				SELECT ctid FROM samples_default WHERE ts >= '%s' AND ts < '%s' LIMIT %d FOR UPDATE SKIP LOCKED))
			RETURNING *)
		INSERT INTO %s SELECT * FROM moved`, lo, hi, batch, ident)
	var moved int64
	for {
		res, err := db.ExecContext(ctx, move)
		if err != nil {
			return moved, err
		}
		n, _ := res.RowsAffected()
		moved += n
		if n < int64(batch) {
			break
		}
		if log != nil {
			log("moving rows out of the default partition", "day", day.Format(time.DateOnly), "moved", moved)
		}
	}
	// The rows that arrived meanwhile, and the attachment: the default partition is
	// locked from here to the commit.
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		for _, s := range []string{
			`SELECT pg_advisory_xact_lock(hashtext('takt_sample_partitions'))`,
			`LOCK TABLE samples_default IN ACCESS EXCLUSIVE MODE`,
		} {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, fmt.Sprintf(`WITH moved AS (DELETE FROM samples_default WHERE ts >= '%s' AND ts < '%s' RETURNING *) INSERT INTO %s SELECT * FROM moved`, lo, hi, ident))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		moved += n
		for _, s := range []string{
			fmt.Sprintf(`ALTER TABLE samples ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')`, ident, lo, hi),
			fmt.Sprintf(`ALTER TABLE %s DROP CONSTRAINT %s`, ident, pgx.Identifier{part + "_range"}.Sanitize()),
		} {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && log != nil {
		log("moved a day out of the default partition", "day", day.Format(time.DateOnly), "partition", part, "rows", moved)
	}
	return moved, err
}

func inTx(ctx context.Context, db *sql.DB, f func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// CreateIndexConcurrently builds index name on table (columns, as in CREATE INDEX)
// without blocking writers: CONCURRENTLY, outside a transaction, with no lock timeout
// (it waits for older transactions, which blocks nobody). On a partitioned table it
// makes the parent's index (ON ONLY, invalid until complete), builds each leaf's
// concurrently and attaches it; a leaf's index left invalid by an interrupted run is
// dropped and built again. Run it from a migration that runs outside a transaction (a
// Go migration with RunDB). Safe to run again.
func CreateIndexConcurrently(ctx context.Context, db *sql.DB, name, table, columns string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	exec := func(q string, args ...any) error {
		if _, err := conn.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("create index %s: %s: %w", name, q, err)
		}
		return nil
	}
	if err := exec(`SET lock_timeout = 0`); err != nil {
		return err
	}
	defer conn.ExecContext(context.Background(), `RESET lock_timeout`)
	var partitioned bool
	if err := conn.QueryRowContext(ctx, `SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass`, table).Scan(&partitioned); err != nil {
		return fmt.Errorf("create index %s: %w", name, err)
	}
	if !partitioned {
		return buildConcurrently(ctx, conn, exec, name, table, columns)
	}
	if err := exec(fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON ONLY %s (%s)`, pgx.Identifier{name}.Sanitize(), table, columns)); err != nil {
		return err
	}
	rows, err := conn.QueryContext(ctx, `SELECT relid::regclass::text FROM pg_partition_tree($1::regclass) WHERE isleaf ORDER BY 1`, table)
	if err != nil {
		return err
	}
	var leaves []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			rows.Close()
			return err
		}
		leaves = append(leaves, l)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	for _, leaf := range leaves {
		leafIndex := leaf + "_" + name
		if err := buildConcurrently(ctx, conn, exec, leafIndex, leaf, columns); err != nil {
			return err
		}
		var attached bool
		if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhparent = to_regclass($2))`,
			leafIndex, name).Scan(&attached); err != nil {
			return err
		}
		if !attached {
			if err := exec(fmt.Sprintf(`ALTER INDEX %s ATTACH PARTITION %s`, pgx.Identifier{name}.Sanitize(), pgx.Identifier{leafIndex}.Sanitize())); err != nil {
				return err
			}
		}
	}
	return nil
}

func buildConcurrently(ctx context.Context, conn *sql.Conn, exec func(string, ...any) error, name, table, columns string) error {
	var valid sql.NullBool
	if err := conn.QueryRowContext(ctx, `SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)`, name).Scan(&valid); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if valid.Valid && valid.Bool {
		return nil
	}
	if valid.Valid { // left invalid by an interrupted build
		if err := exec(fmt.Sprintf(`DROP INDEX CONCURRENTLY IF EXISTS %s`, pgx.Identifier{name}.Sanitize())); err != nil {
			return err
		}
	}
	return exec(fmt.Sprintf(`CREATE INDEX CONCURRENTLY %s ON %s (%s)`, pgx.Identifier{name}.Sanitize(), table, columns))
}
