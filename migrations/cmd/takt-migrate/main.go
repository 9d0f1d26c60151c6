// Command takt-migrate applies Takt's database migrations and maintains the daily
// partitions of the samples table.
//
//	takt-migrate [-database URL] up|down|status
//	takt-migrate [-database URL] partitions [-ahead DAYS] [-retention DAYS]
//
// The database URL comes from -database or, by default, DATABASE_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"takt.dev/migrations"
	"takt.dev/servicekit"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "takt-migrate:", err)
		os.Exit(1)
	}
}

const usage = `usage: takt-migrate [-database URL] [-lock-timeout 2s] [-lock-retries 30] COMMAND

Commands:
  --version   print the build
  up          apply every pending migration
  down        roll back the most recent migration
  status      list migrations and whether each is applied
  audit-verify  check the audit log's hash chain; print its length and head hash
              (record the head elsewhere: entries cut off the end show against it)
  partitions  create daily sample partitions ahead, move rows out of the default
              partition in batches, and drop partitions past retention
              [-ahead DAYS (default 7, 1..3660)] [-retention DAYS (default 0 = keep all)]
              [-move-batch ROWS (default 10000; 0: do not move)]

The database URL is -database, or DATABASE_URL when the flag is not given.
Every statement waits at most -lock-timeout for a lock (so that a migration never
makes writers queue behind it for longer); up tries a migration that gave up again,
-lock-retries times, after a pause that doubles from 1s. Progress and retries are
logged on stderr, as text or JSON (TAKT_LOG_FORMAT=json, TAKT_LOG_LEVEL).
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, servicekit.VersionLine("takt-migrate"))
		return nil
	}

	fl := flag.NewFlagSet("takt-migrate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, usage) }
	envURL, err := servicekit.Env(getenv, "DATABASE_URL")
	if err != nil {
		return err
	}
	url := fl.String("database", envURL, "PostgreSQL URL (default $DATABASE_URL, or the file $DATABASE_URL_FILE names)")
	lockTimeout := fl.Duration("lock-timeout", 2*time.Second, "how long a statement waits for a lock before it gives up (0: forever)")
	lockRetries := fl.Int("lock-retries", 30, "how many times up tries again a migration that gave up waiting for a lock")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() == 0 {
		fl.Usage()
		return errors.New("no command given")
	}
	if *url == "" {
		return errors.New("no database: set DATABASE_URL or pass -database")
	}
	if *lockTimeout < 0 || *lockRetries < 0 {
		return fmt.Errorf("-lock-timeout %v, -lock-retries %d: want 0 or more", *lockTimeout, *lockRetries)
	}
	// Progress and retries go to stderr as the services log (TAKT_LOG_FORMAT,
	// TAKT_LOG_LEVEL); results to stdout.
	log, err := servicekit.Logger(getenv, stderr)
	if err != nil {
		return err
	}
	db, err := migrations.OpenForMigrations(*url, *lockTimeout)
	if err != nil {
		return err
	}
	defer db.Close()

	cmd, rest := fl.Arg(0), fl.Args()[1:]
	if cmd != "partitions" && len(rest) > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", cmd, rest)
	}
	switch cmd {
	case "up", "down", "status":
		p, err := migrations.NewProvider(db)
		if err != nil {
			return err
		}
		switch cmd {
		case "up":
			res, err := migrations.UpOnline(ctx, db, migrations.UpOptions{Retries: *lockRetries, Pause: time.Second, Log: log.Warn})
			for _, r := range res {
				fmt.Fprintf(stdout, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(time.Millisecond))
			}
			if err != nil {
				return err
			}
			if len(res) == 0 {
				fmt.Fprintln(stdout, "up to date")
			}
		case "down":
			r, err := p.Down(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "rolled back %s\n", r.Source.Path)
		case "status":
			st, err := p.Status(ctx)
			if err != nil {
				return err
			}
			for _, s := range st {
				applied := "pending"
				if !s.AppliedAt.IsZero() {
					applied = "applied " + s.AppliedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(stdout, "%-40s %s\n", s.Source.Path, applied)
			}
		}
		return nil
	case "audit-verify":
		n, head, err := migrations.VerifyAudit(ctx, db)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "audit log intact: %d entries, head hash %s\n", n, head)
		return nil
	case "partitions":
		pf := flag.NewFlagSet("partitions", flag.ContinueOnError)
		pf.SetOutput(stderr)
		ahead := pf.Int("ahead", 7, "days of partitions to create from today (UTC)")
		retention := pf.Int("retention", 0, "drop partitions of days older than this many days (0 keeps all)")
		moveBatch := pf.Int("move-batch", 10000, "rows moved out of the default partition per transaction (0: do not move)")
		if err := pf.Parse(rest); err != nil {
			return err
		}
		if *ahead < 1 || *ahead > 3660 {
			return fmt.Errorf("partitions: -ahead %d: want 1 to 3660", *ahead)
		}
		if *retention < 0 {
			return fmt.Errorf("partitions: -retention %d: want 0 (keep all) or more", *retention)
		}
		if *moveBatch < 0 || *moveBatch > 1000000 {
			return fmt.Errorf("partitions: -move-batch %d: want 0 (do not move) to 1000000", *moveBatch)
		}
		now := time.Now().UTC()
		n, err := migrations.EnsureSamplePartitions(ctx, db, now, *ahead)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %d partition(s) for %s .. %s\n", n, now.Format(time.DateOnly), now.AddDate(0, 0, *ahead-1).Format(time.DateOnly))
		if *moveBatch > 0 {
			// Days from the oldest kept (90 days back without retention: the bridge's
			// default timestamp window) to the last made ahead.
			from := now.AddDate(0, 0, -90)
			if *retention > 0 {
				from = now.AddDate(0, 0, -*retention)
			}
			from = from.Truncate(24 * time.Hour)
			days, rows, err := migrations.MoveDefaultSamples(ctx, db, from, now.Truncate(24*time.Hour).AddDate(0, 0, *ahead), *moveBatch, log.Info)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "moved %d row(s) of %d day(s) out of the default partition\n", rows, days)
		}
		if *retention > 0 {
			cutoff := now.AddDate(0, 0, -*retention)
			d, err := migrations.DropSamplePartitions(ctx, db, cutoff)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "dropped %d partition(s) before %s\n", d, cutoff.Format(time.DateOnly))
		}
		return nil
	default:
		fl.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}
