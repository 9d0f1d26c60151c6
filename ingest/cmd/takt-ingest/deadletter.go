package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"takt.dev/ingest/deadletter"
	"takt.dev/schemas"
)

const deadletterUsage = `usage: takt-ingest [-c FILE] deadletter list|replay [flags]
  list     print the dead letters the filters select
  replay   check them again with the current limits and write those that pass back
           to the samples topic; exactly once in storage (the sink drops what it has)
filters: -reason R[,R...] -tenant T -since TIME -until TIME (RFC 3339, or a duration ago: 24h)`

// deadletterCmd runs takt-ingest deadletter list|replay.
func deadletterCmd(ctx context.Context, cfg *Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		fmt.Fprintln(stderr, deadletterUsage)
		return errors.New("deadletter: want list or replay")
	}
	verb := args[0]
	fs := flag.NewFlagSet("takt-ingest deadletter "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	reasons := fs.String("reason", "", "only these reasons, comma-separated (e.g. ts_out_of_window)")
	tenant := fs.String("tenant", "", "only letters of this tenant")
	since := fs.String("since", "", "only letters received at or after: RFC 3339 time, or a duration ago (24h)")
	until := fs.String("until", "", "only letters received before: RFC 3339 time, or a duration ago")
	limit := fs.Int("limit", 0, "list: at most this many letters (0: all)")
	asJSON := fs.Bool("json", false, "list: one JSON object per letter, payload included")
	dryRun := fs.Bool("dry-run", false, "replay: check and count, write nothing")
	again := fs.Bool("again", false, "replay: also the letters replayed before")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("deadletter %s: unexpected arguments %q", verb, fs.Args())
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return errors.New("kafka.brokers: missing (or set TAKT_KAFKA_BROKERS)")
	}
	var f deadletter.Filter
	if *reasons != "" {
		known := schemas.Reasons()
		for _, r := range strings.Split(*reasons, ",") {
			reason := schemas.Reason(strings.TrimSpace(r))
			ok := false
			for _, k := range known {
				ok = ok || k == reason
			}
			if !ok {
				return fmt.Errorf("-reason %q: unknown (want one of %v)", reason, known)
			}
			f.Reasons = append(f.Reasons, reason)
		}
	}
	if *tenant != "" {
		if err := schemas.CheckName(*tenant); err != nil {
			return fmt.Errorf("-tenant %q: %v", *tenant, err)
		}
		f.Tenant = *tenant
	}
	var err error
	if f.Since, err = parseWhen("since", *since); err != nil {
		return err
	}
	if f.Until, err = parseWhen("until", *until); err != nil {
		return err
	}
	switch verb {
	case "list":
		return listLetters(ctx, cfg, f, *limit, *asJSON, stdout, stderr)
	default:
		return replayLetters(ctx, cfg, f, *dryRun, *again, stdout, stderr)
	}
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("-%s %q: want an RFC 3339 time (2026-12-01T08:00:00Z) or a duration ago (24h)", name, v)
	}
	return t, nil
}

func listLetters(ctx context.Context, cfg *Config, f deadletter.Filter, limit int, asJSON bool, stdout, stderr io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "LETTER\tRECEIVED\tREASON\tTENANT\tBYTES\tREPLAYABLE\tSOURCE\tERROR")
	}
	n := 0
	enc := json.NewEncoder(stdout)
	err := deadletter.Scan(ctx, cfg.Kafka.Link, cfg.Kafka.Topic(schemas.KafkaDeadLetter), f, func(l *deadletter.Letter) error {
		if limit > 0 && n >= limit {
			return deadletter.ErrStop
		}
		n++
		ok, why := l.Replayable()
		if asJSON {
			return enc.Encode(struct {
				Letter     string `json:"letter"`
				Tenant     string `json:"tenant,omitempty"`
				Replayable bool   `json:"replayable"`
				Why        string `json:"why_not,omitempty"`
				schemas.DeadLetter
			}{l.ID().String(), l.Tenant, ok, why, l.DeadLetter})
		}
		replayable := "yes"
		if !ok {
			replayable = "no: " + why
			if len(replayable) > 40 {
				replayable = replayable[:40] + "…"
			}
		}
		msg := strings.ReplaceAll(l.Error, "\n", " ")
		if len(msg) > 120 {
			msg = msg[:120] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%q\n", l.ID(), l.ReceivedAt.Format(time.RFC3339), l.Reason, l.Tenant,
			l.PayloadBytes, replayable, l.Source, msg)
		return nil
	}, func(err error) { fmt.Fprintln(stderr, "skipped:", err) })
	if err != nil && !errors.Is(err, deadletter.ErrStop) {
		return err
	}
	if !asJSON {
		tw.Flush()
		fmt.Fprintf(stderr, "%d letters\n", n)
	}
	return nil
}

func replayLetters(ctx context.Context, cfg *Config, f deadletter.Filter, dryRun, again bool, stdout, stderr io.Writer) error {
	opt := deadletter.Options{Limits: cfg.limits(), DryRun: dryRun, Again: again}
	opt.Limits.Now = time.Now
	if cfg.DatabaseURL != "" {
		pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
		if err != nil {
			return fmt.Errorf("database_url: %w", err)
		}
		defer pool.Close()
		opt.Marks = &deadletter.Marks{Pool: pool}
	} else {
		fmt.Fprintln(stderr, "no database_url: replayed letters are not noted, so a rerun replays them again (the sink still stores them once)")
	}
	opt.Progress = func(r deadletter.Report) {
		fmt.Fprintf(stderr, "progress: %d matched, %d replayed\n", r.Matched, r.Replayed)
	}
	rep, err := deadletter.Replay(ctx, cfg.Kafka.Link, f, opt, func(s string) { fmt.Fprintln(stderr, s) })
	prefix := ""
	if dryRun {
		prefix = "dry run, nothing written: "
	}
	fmt.Fprintln(stdout, prefix+rep.String())
	return err
}
