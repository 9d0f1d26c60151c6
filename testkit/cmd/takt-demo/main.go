// Command takt-demo runs as much of the Takt pipeline as exists, with embedded
// defaults and throwaway servers: a private PostgreSQL with the schema applied and
// a demo plant registered, a private Mosquitto broker, and an in-process
// Kafka-protocol broker with Takt's topics. It prints where each one listens and
// stops them all on Ctrl-C.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"takt.dev/migrations"
	"takt.dev/schemas"
	"takt.dev/testkit"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "takt-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := os.MkdirTemp("", "takt-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}

	fmt.Fprintln(out, "takt-demo: starting PostgreSQL...")
	pg, err := testkit.StartPostgres(filepath.Join(root, "postgres"))
	if err != nil {
		return err
	}
	defer pg.Close()
	dbURL := pg.URL("takt")
	if err := setupDatabase(ctx, pg.URL("postgres"), dbURL); err != nil {
		return err
	}

	fmt.Fprintln(out, "takt-demo: starting Mosquitto...")
	mq, err := testkit.StartMosquitto(filepath.Join(root, "mosquitto"))
	if err != nil {
		return err
	}
	defer mq.Close()

	fmt.Fprintln(out, "takt-demo: starting the Kafka-protocol broker...")
	kf, err := testkit.StartKafka(filepath.Join(root, "kafka"), testkit.KafkaOptions{Partitions: 4})
	if err != nil {
		return err
	}
	defer kf.Close()

	demo := schemas.Path{Tenant: "acme", Site: "lyon", Area: "packaging", Line: "line-1", Equipment: "filler-1"}
	fmt.Fprintf(out, `
Takt demo is running. Started:
  PostgreSQL   %s
               schema applied (takt-migrate up), sample partitions for 7 days,
               demo plant registered: tenant acme, site lyon (Europe/Paris), line line-1
  MQTT broker  %s   (agents publish to %s)
  Kafka        %s   topics %s, %s, %s

Not yet part of the pipeline (open issues): edge-agent and the simulated PLCs,
ingest (bridge and sink), aggregator, api and dashboard.

Try:  psql '%s' -c '\dt'
      kcat -b %s -L
Ctrl-C stops everything.
`, dbURL, mq.URL(), demo.Topic(), kf.Brokers()[0], schemas.KafkaSamples, schemas.KafkaEvents, schemas.KafkaDeadLetter, dbURL, kf.Brokers()[0])

	<-ctx.Done()
	fmt.Fprintln(out, "\ntakt-demo: stopping")
	return nil
}

func setupDatabase(ctx context.Context, adminURL, dbURL string) error {
	c, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	_, err = c.Exec(ctx, "CREATE DATABASE takt")
	c.Close(ctx)
	if err != nil {
		return err
	}
	db, err := migrations.Open(dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		return err
	}
	if _, err := migrations.EnsureSamplePartitions(ctx, db, time.Now(), 7); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, `
WITH tn AS (INSERT INTO tenant VALUES ('acme', 'Acme Beverages') RETURNING tenant_id),
s AS (INSERT INTO site (tenant_id, code, name, time_zone) SELECT tenant_id, 'lyon', 'Lyon plant', 'Europe/Paris' FROM tn RETURNING tenant_id, id),
a AS (INSERT INTO area (tenant_id, site_id, code, name) SELECT tenant_id, id, 'packaging', 'Packaging' FROM s RETURNING tenant_id, id),
l AS (INSERT INTO line (tenant_id, area_id, code, name) SELECT tenant_id, id, 'line-1', 'Line 1' FROM a RETURNING tenant_id, id),
w AS (INSERT INTO work_center (tenant_id, line_id, code, name) SELECT tenant_id, id, 'filling', 'Filling' FROM l RETURNING tenant_id, id)
INSERT INTO equipment (tenant_id, work_center_id, code, name, ideal_cycle_time_s)
SELECT tenant_id, id, code, name, ict FROM w,
  (VALUES ('filler-1', 'Filler 1', 0.5), ('capper-1', 'Capper 1', 0.45), ('labeler-1', 'Labeler 1', 0.4)) AS e(code, name, ict)`)
	return err
}
