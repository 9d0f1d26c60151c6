// Package migrations holds Takt's PostgreSQL schema as versioned SQL files, embedded
// in the binary and applied with goose.
//
// The schema is the seed plan's data model: dimensions (tenant, site with its IANA
// time zone, area, line, work center, equipment, product, shift calendar), facts
// (production runs, downtime, maintenance, machine state intervals, part counts), the
// raw samples partitioned by day, OEE windows, the sink's Kafka positions and an
// append-only audit log. Every tenant-owned table carries tenant_id and row-level
// security; the role takt_app, which owns nothing, is the one RLS restricts.
//
// Contract for callers: Up is idempotent and safe to run from several processes at
// once (a PostgreSQL advisory lock serialises them). Migrations that add constraints
// to big tables add them NOT VALID and validate them in a second step.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	// The pgx database/sql driver, registered as "pgx".
	_ "github.com/jackc/pgx/v5/stdlib"
)

//go:embed sql/*.sql
var embedded embed.FS

// AppRole is the database role row-level security applies to.
const AppRole = "takt_app"

// FS returns the migration files.
func FS() fs.FS {
	sub, err := fs.Sub(embedded, "sql")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// Open opens a database/sql handle on url with the pgx driver.
func Open(url string) (*sql.DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return db, nil
}

// NewProvider returns a goose provider over the embedded migrations (and extra ones
// after them), holding a session advisory lock while it migrates.
func NewProvider(db *sql.DB, extra ...*goose.Migration) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker)}
	if len(extra) > 0 {
		opts = append(opts, goose.WithGoMigrations(extra...))
	}
	return goose.NewProvider(goose.DialectPostgres, db, FS(), opts...)
}

// Up applies every pending migration.
func Up(ctx context.Context, db *sql.DB) error {
	p, err := NewProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// EnsureSamplePartitions creates the daily partitions of samples for the days
// from the UTC day of from through days-1 days later, moving rows that the default
// partition holds for those days. It returns how many partitions it created.
func EnsureSamplePartitions(ctx context.Context, db *sql.DB, from time.Time, days int) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT takt_ensure_sample_partitions($1::date, $2)`, from.UTC().Format(time.DateOnly), days).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("create sample partitions: %w", err)
	}
	return n, nil
}

// DropSamplePartitions drops the daily partitions of UTC days before cutoff's day,
// and older rows of the default partition. It returns how many partitions it dropped.
func DropSamplePartitions(ctx context.Context, db *sql.DB, cutoff time.Time) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT takt_drop_sample_partitions($1::date)`, cutoff.UTC().Format(time.DateOnly)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("drop sample partitions: %w", err)
	}
	return n, nil
}
